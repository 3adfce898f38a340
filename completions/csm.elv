
use builtin;
use str;

set edit:completion:arg-completer[csm] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'csm'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'csm'= {
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand sign 'Compute a signature offline (every KooGallery scheme)'
            cand verify 'Check a signature; on a mismatch, show what was signed and find the usual mistake'
            cand crypto 'V1 credential encryption: derive the AES key, encrypt, decrypt'
            cand send 'Send one signed callback to an endpoint and judge the reply'
            cand test-endpoint 'Play the marketplace against an endpoint: lifecycle, idempotency, negative, dial, readiness'
            cand serve 'Run a reference merchant endpoint or a stand-in marketplace on this machine'
            cand license 'License codes: keys, generation, inspection, validation, activation'
            cand usage 'Usage records (话单): validate, upload, replay, status, export'
            cand init 'Interactive setup of a profile (endpoint, protocol, key locations)'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;sign'= {
            cand --key-file 'File holding the key (its content without a trailing newline); `-` reads standard input'
            cand --timestamp 'Timestamp: epoch ms (V2, Kit, License, usage) or yyyyMMddHHmmssSSS (V1); generated when absent'
            cand --nonce 'Nonce (V2, Kit, License, usage); 64 random hex characters when absent'
            cand --param 'A query parameter for saas-v1, decoded (repeatable)'
            cand --body-file 'The body, exact bytes; `-` reads standard input'
            cand --ak 'apig: the access key id (AK)'
            cand --sk-file 'apig: file holding the secret key (SK); also CSM_SK'
            cand --date 'apig: the X-Sdk-Date value (YYYYMMDDTHHMMSSZ); now when absent'
            cand --method 'apig: the HTTP method'
            cand --url 'apig: the request URL'
            cand --header 'apig: a header to sign, ''Name: value'' (repeatable; X-Sdk-Date is always signed)'
            cand --license-inner 'license: the inner step (spec decision 5)'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --uppercase 'Print hex signatures in upper case, as the marketplace sends them'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;verify'= {
            cand --key-file 'File holding the key (its content without a trailing newline); `-` reads standard input'
            cand --timestamp 'Timestamp: epoch ms (V2, Kit, License, usage) or yyyyMMddHHmmssSSS (V1); generated when absent'
            cand --nonce 'Nonce (V2, Kit, License, usage); 64 random hex characters when absent'
            cand --param 'A query parameter for saas-v1, decoded (repeatable)'
            cand --body-file 'The body, exact bytes; `-` reads standard input'
            cand --ak 'apig: the access key id (AK)'
            cand --sk-file 'apig: file holding the secret key (SK); also CSM_SK'
            cand --date 'apig: the X-Sdk-Date value (YYYYMMDDTHHMMSSZ); now when absent'
            cand --method 'apig: the HTTP method'
            cand --url 'apig: the request URL'
            cand --header 'apig: a header to sign, ''Name: value'' (repeatable; X-Sdk-Date is always signed)'
            cand --license-inner 'license: the inner step (spec decision 5)'
            cand --signature 'The received signature (authToken, x-sign, Body-Sign header or value, Authorization header)'
            cand --scheme '`response`: the scheme whose response signature to check'
            cand --kit-key-file 'The Kit key, to check Kit captures and to spot a Kit key used for basic calls'
            cand --license-key-file 'The License delivery key, for License 2.0 captures'
            cand --window 'Replay window in seconds for V2 timestamps (spec decision 3)'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;crypto'= {
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand derive-key 'Print the AES key derived from the access key (hex)'
            cand encrypt 'Encrypt VALUE: prints the 16-character IV followed by Base64'
            cand decrypt 'Decrypt VALUE (IV prefix + Base64): prints the plaintext'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;crypto;derive-key'= {
            cand --key-file 'File holding the access key (its content without a trailing newline); also CSM_ACCESS_KEY'
            cand --encrypt-type '1 = AES-256 (the default when a response omits encryptType), 2 = AES-128'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;crypto;encrypt'= {
            cand --key-file 'File holding the access key (its content without a trailing newline); also CSM_ACCESS_KEY'
            cand --encrypt-type '1 = AES-256 (the default when a response omits encryptType), 2 = AES-128'
            cand --iv 'The IV string (16 ASCII characters); random alphanumerics when absent'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;crypto;decrypt'= {
            cand --key-file 'File holding the access key (its content without a trailing newline); also CSM_ACCESS_KEY'
            cand --encrypt-type '1 = AES-256 (the default when a response omits encryptType), 2 = AES-128'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;crypto;help'= {
            cand derive-key 'Print the AES key derived from the access key (hex)'
            cand encrypt 'Encrypt VALUE: prints the 16-character IV followed by Base64'
            cand decrypt 'Decrypt VALUE (IV prefix + Base64): prints the plaintext'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;crypto;help;derive-key'= {
        }
        &'csm;crypto;help;encrypt'= {
        }
        &'csm;crypto;help;decrypt'= {
        }
        &'csm;crypto;help;help'= {
        }
        &'csm;send'= {
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;test-endpoint'= {
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;serve'= {
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand merchant 'A reference merchant endpoint: verifies every callback and answers as the spec says'
            cand marketplace 'A stand-in marketplace: usage push and license open APIs, and License callbacks'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;serve;merchant'= {
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;serve;marketplace'= {
            cand --listen 'Address to listen on; port 0 picks a free port (printed on start)'
            cand --key-file 'The seller key bound to the basic interfaces: verifies usage push signatures'
            cand --ak 'API Gateway access key id accepted by the license open APIs'
            cand --sk-file 'API Gateway secret key accepted by the license open APIs'
            cand --license-key-file 'The key bound to the License delivery interface: signs License callbacks to the merchant'
            cand --merchant-endpoint 'The merchant''s production address, for License callbacks'
            cand --state 'SQLite state file (accepted usage in table usage_records); in memory when absent'
            cand --fault 'Misbehave on purpose (repeatable)'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;serve;help'= {
            cand merchant 'A reference merchant endpoint: verifies every callback and answers as the spec says'
            cand marketplace 'A stand-in marketplace: usage push and license open APIs, and License callbacks'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;serve;help;merchant'= {
        }
        &'csm;serve;help;marketplace'= {
        }
        &'csm;serve;help;help'= {
        }
        &'csm;license'= {
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;usage'= {
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand validate 'Check a file against every local rule (nothing is journaled or sent)'
            cand upload 'Journal the records of a file, then send them in signed batches'
            cand replay 'Send again everything in the journal that is not accepted yet (same metering_sn)'
            cand status 'Counts by state, the oldest unsent record, deadlines, the last errors'
            cand export 'Write the records in one state to a file (CSV or JSONL) that upload reads back'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;usage;validate'= {
            cand --format 'Input format; by default from the extension (.jsonl/.ndjson/.json are JSONL, else CSV)'
            cand --billing 'How the product''s pay-per-use item is billed (sets the reporting deadlines)'
            cand --journal 'The journal (SQLite). Default: <data dir>/csm/usage-journal.sqlite'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;usage;upload'= {
            cand --format 'Input format; by default from the extension (.jsonl/.ndjson/.json are JSONL, else CSV)'
            cand --billing 'How the product''s pay-per-use item is billed (sets the reporting deadlines)'
            cand --journal 'The journal (SQLite). Default: <data dir>/csm/usage-journal.sqlite'
            cand --key-file 'The seller key bound to the basic interfaces (signs the usage push)'
            cand --endpoint 'Marketplace base URL (scheme, host, port); csm appends the API path'
            cand --batch 'Records per request (100 to 1000)'
            cand --retries 'Further attempts of a batch after a network error or 5xx'
            cand --backoff-ms 'First pause between attempts in milliseconds (doubles, with jitter, up to 30 s)'
            cand --timeout 'Seconds to wait for one answer'
            cand --usage-value 'How usage_value is written in the body (decision 6: a JSON number)'
            cand --ak 'API Gateway access key id (with --apig)'
            cand --sk-file 'API Gateway secret key file (with --apig)'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --apig 'Also sign each request for the API Gateway (AK/SK, SDK-HMAC-SHA256), on top of the body signature; needs --ak and --sk-file (or the profile''s)'
            cand --dry-run 'Check and count everything, journal nothing, send nothing'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;usage;replay'= {
            cand --journal 'The journal (SQLite). Default: <data dir>/csm/usage-journal.sqlite'
            cand --key-file 'The seller key bound to the basic interfaces (signs the usage push)'
            cand --endpoint 'Marketplace base URL (scheme, host, port); csm appends the API path'
            cand --batch 'Records per request (100 to 1000)'
            cand --retries 'Further attempts of a batch after a network error or 5xx'
            cand --backoff-ms 'First pause between attempts in milliseconds (doubles, with jitter, up to 30 s)'
            cand --timeout 'Seconds to wait for one answer'
            cand --usage-value 'How usage_value is written in the body (decision 6: a JSON number)'
            cand --ak 'API Gateway access key id (with --apig)'
            cand --sk-file 'API Gateway secret key file (with --apig)'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --apig 'Also sign each request for the API Gateway (AK/SK, SDK-HMAC-SHA256), on top of the body signature; needs --ak and --sk-file (or the profile''s)'
            cand --include-rejected 'Also resend records the marketplace rejected for good'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;usage;status'= {
            cand --journal 'The journal (SQLite). Default: <data dir>/csm/usage-journal.sqlite'
            cand --billing 'How the product''s pay-per-use item is billed (sets the reporting deadlines)'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;usage;export'= {
            cand --journal 'The journal (SQLite). Default: <data dir>/csm/usage-journal.sqlite'
            cand --state 'Which records: pending, sent, accepted or rejected'
            cand --out 'Output file (.jsonl/.ndjson/.json for JSONL, else CSV); written whole or not at all'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;usage;help'= {
            cand validate 'Check a file against every local rule (nothing is journaled or sent)'
            cand upload 'Journal the records of a file, then send them in signed batches'
            cand replay 'Send again everything in the journal that is not accepted yet (same metering_sn)'
            cand status 'Counts by state, the oldest unsent record, deadlines, the last errors'
            cand export 'Write the records in one state to a file (CSV or JSONL) that upload reads back'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;usage;help;validate'= {
        }
        &'csm;usage;help;upload'= {
        }
        &'csm;usage;help;replay'= {
        }
        &'csm;usage;help;status'= {
        }
        &'csm;usage;help;export'= {
        }
        &'csm;usage;help;help'= {
        }
        &'csm;init'= {
            cand --endpoint 'The merchant''s production address (https://…)'
            cand --protocol 'Callback protocol version: v1 or v2'
            cand --key-file 'File holding the basic-interface key'
            cand --kit-key-file 'File holding the Kit (joint-operation sync) key'
            cand --license-key-file 'File holding the License delivery key'
            cand --ak 'API Gateway access key id (AK) for the marketplace open APIs'
            cand --sk-file 'File holding the API Gateway secret key (SK)'
            cand --marketplace-endpoint 'Base URL of the marketplace open APIs (usage push, license activation)'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;completions'= {
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;help'= {
            cand sign 'Compute a signature offline (every KooGallery scheme)'
            cand verify 'Check a signature; on a mismatch, show what was signed and find the usual mistake'
            cand crypto 'V1 credential encryption: derive the AES key, encrypt, decrypt'
            cand send 'Send one signed callback to an endpoint and judge the reply'
            cand test-endpoint 'Play the marketplace against an endpoint: lifecycle, idempotency, negative, dial, readiness'
            cand serve 'Run a reference merchant endpoint or a stand-in marketplace on this machine'
            cand license 'License codes: keys, generation, inspection, validation, activation'
            cand usage 'Usage records (话单): validate, upload, replay, status, export'
            cand init 'Interactive setup of a profile (endpoint, protocol, key locations)'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;help;sign'= {
        }
        &'csm;help;verify'= {
        }
        &'csm;help;crypto'= {
            cand derive-key 'Print the AES key derived from the access key (hex)'
            cand encrypt 'Encrypt VALUE: prints the 16-character IV followed by Base64'
            cand decrypt 'Decrypt VALUE (IV prefix + Base64): prints the plaintext'
        }
        &'csm;help;crypto;derive-key'= {
        }
        &'csm;help;crypto;encrypt'= {
        }
        &'csm;help;crypto;decrypt'= {
        }
        &'csm;help;send'= {
        }
        &'csm;help;test-endpoint'= {
        }
        &'csm;help;serve'= {
            cand merchant 'A reference merchant endpoint: verifies every callback and answers as the spec says'
            cand marketplace 'A stand-in marketplace: usage push and license open APIs, and License callbacks'
        }
        &'csm;help;serve;merchant'= {
        }
        &'csm;help;serve;marketplace'= {
        }
        &'csm;help;license'= {
        }
        &'csm;help;usage'= {
            cand validate 'Check a file against every local rule (nothing is journaled or sent)'
            cand upload 'Journal the records of a file, then send them in signed batches'
            cand replay 'Send again everything in the journal that is not accepted yet (same metering_sn)'
            cand status 'Counts by state, the oldest unsent record, deadlines, the last errors'
            cand export 'Write the records in one state to a file (CSV or JSONL) that upload reads back'
        }
        &'csm;help;usage;validate'= {
        }
        &'csm;help;usage;upload'= {
        }
        &'csm;help;usage;replay'= {
        }
        &'csm;help;usage;status'= {
        }
        &'csm;help;usage;export'= {
        }
        &'csm;help;init'= {
        }
        &'csm;help;completions'= {
        }
        &'csm;help;help'= {
        }
    ]
    $completions[$command]
}
