
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
            cand crypto 'V1 credential encryption (derive the AES key, encrypt, decrypt); a 联营 app''s RSA pair'
            cand send 'Send one signed callback to an endpoint and judge the reply'
            cand test-endpoint 'Play the marketplace against an endpoint: lifecycle, idempotency, negative, dial, readiness'
            cand load 'Signed callbacks at a fixed arrival rate: honest latency percentiles, a CI gate'
            cand serve 'Run a reference merchant endpoint or a stand-in marketplace on this machine'
            cand license 'License codes: keys, generation, inspection, validation, activation'
            cand usage 'Usage records (话单): validate, upload, replay, status, export, resolve'
            cand init 'Interactive setup of a profile (endpoint, protocol, key locations)'
            cand profile 'The profiles `csm init` wrote: list them, show one (key file paths, never keys)'
            cand completions 'Print a shell completion script'
            cand man 'Write the manual pages into a directory (e.g. ~/.local/share/man/man1)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;sign'= {
            cand --key-file 'File holding the key (its content without a trailing newline); `-` reads standard input'
            cand --timestamp 'Timestamp: epoch ms (V2, Kit, License, usage) or yyyyMMddHHmmssSSS (V1); generated when absent'
            cand --nonce 'Nonce (V2, Kit, License, usage); 64 random hex characters when absent'
            cand --param 'A query parameter for saas-v1, decoded (repeatable)'
            cand --body-file 'The body, exact bytes; `-` reads standard input'
            cand --body 'The body, exact bytes; `-` reads standard input'
            cand --ak 'apig: the access key id (AK)'
            cand --sk-file 'apig: file holding the secret key (SK); also CSM_SK'
            cand --date 'apig: the X-Sdk-Date value (YYYYMMDDTHHMMSSZ); now when absent'
            cand --method 'apig: the HTTP method'
            cand --url 'The request URL (apig: signed; saas-v1: the parameters in its query are signed too; sign --curl: where the request goes)'
            cand --header 'apig: a header to sign, ''Name: value'' (repeatable; X-Sdk-Date is always signed)'
            cand --license-inner 'license: the inner step (spec decision 5)'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --uppercase 'Print a hex signature in upper case with -q and in --json''s `signature` (the query and header lines always carry it so, as the marketplace sends it)'
            cand --curl 'Print the whole signed request as a curl command. The address is --url, else the profile''s endpoint (saas-v1, saas-v2, license) or marketplace endpoint (usage)'
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
            cand --index '`request` with a `--record` file of several requests: which one (1 = the first)'
            cand --key-file 'File holding the key (its content without a trailing newline); `-` reads standard input'
            cand --param 'A query parameter for saas-v1, decoded (repeatable)'
            cand --body-file 'The body, exact bytes; `-` reads standard input'
            cand --body 'The body, exact bytes; `-` reads standard input'
            cand --ak 'apig: the access key id (AK)'
            cand --sk-file 'apig: file holding the secret key (SK); also CSM_SK'
            cand --method 'apig: the HTTP method'
            cand --url 'The request URL (apig: signed; saas-v1: the parameters in its query are signed too; sign --curl: where the request goes)'
            cand --header 'apig: a header to sign, ''Name: value'' (repeatable; X-Sdk-Date is always signed)'
            cand --license-inner 'license: the inner step (spec decision 5)'
            cand --signature 'The received signature (authToken, x-sign, Body-Sign header or value, Authorization header), as a log shows it: quotes, the header''s name and URL encoding are undone. saas-v1 also takes it from the authToken in --url''s query'
            cand --scheme '`response`: the scheme of the call the reply answers; its key checks the Body-Sign, which V1 replies must carry and V2 replies may. Default: the profile''s protocol (v2: saas-v2), else saas-v1'
            cand --kit-key-file 'The Kit key, to check Kit captures and to spot a Kit key used for basic calls'
            cand --license-key-file 'The License delivery key, for License 2.0 captures'
            cand --window 'Replay window for V2 timestamps (spec decision 3): 60s, 5m; a bare number is seconds (1s to 24h)'
            cand --timestamp 'The timestamp that was sent: epoch ms (V2, Kit, License, usage; required) or yyyyMMddHHmmssSSS (V1, its timeStamp parameter)'
            cand --nonce 'The nonce that was sent (V2, Kit, License, usage; required)'
            cand --date 'apig: the X-Sdk-Date that was sent (YYYYMMDDTHHMMSSZ; required)'
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
            cand rsa-keygen 'Make the 3072-bit RSA pair of a joint-operation (联营) app: register FILE.pub (SPKI PEM) with the marketplace, give FILE (PKCS#8 PEM) to `csm serve merchant --app-private-key` or your app, which decrypts applicationSync''s clientSecret with it'
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
        &'csm;crypto;rsa-keygen'= {
            cand --out 'Private key file to write (PKCS#8 PEM, 0600); the public key goes to FILE.pub'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --force 'Replace existing key files'
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
            cand rsa-keygen 'Make the 3072-bit RSA pair of a joint-operation (联营) app: register FILE.pub (SPKI PEM) with the marketplace, give FILE (PKCS#8 PEM) to `csm serve merchant --app-private-key` or your app, which decrypts applicationSync''s clientSecret with it'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;crypto;help;derive-key'= {
        }
        &'csm;crypto;help;encrypt'= {
        }
        &'csm;crypto;help;decrypt'= {
        }
        &'csm;crypto;help;rsa-keygen'= {
        }
        &'csm;crypto;help;help'= {
        }
        &'csm;send'= {
            cand --scene 'Scene or status for activities that have one (RENEWAL, FREEZE, ...)'
            cand --endpoint 'The production address, e.g. https://isv.example.com/produce'
            cand --protocol 'Callback protocol version (default: the profile''s, else v2)'
            cand --key-file 'File holding the key bound to the basic interfaces (also CSM_ACCESS_KEY). orderNotify is signed with this key too: pass the general (通用) interface key for it'
            cand --kit-key-file 'File holding the Kit (joint-operation sync) key (also CSM_KIT_KEY)'
            cand --license-key-file 'File holding the License delivery key (also CSM_LICENSE_KEY)'
            cand --app-public-key 'The RSA public key (PEM: SPKI or PKCS#1, at least 3072 bits) registered for your joint-operation app: applicationSync then carries a real RSA-OAEP ciphertext (Base64) of a fresh clientSecret. Without it, random bytes of a ciphertext''s size stand in, which no private key decrypts. `csm crypto rsa-keygen` makes a pair'
            cand --oaep 'OAEP parameters for --app-public-key (the docs do not name them)'
            cand --set 'Override a field: `--set instanceId=abc`, nested `--set a.b=c`; JSON for integer, array and object fields. Repeatable'
            cand --unset 'Leave a field out. Repeatable'
            cand --body-file 'Start from this JSON object instead of generated values; its bytes are sent (and signed) exactly as they are'
            cand --body 'Start from this JSON object instead of generated values; its bytes are sent (and signed) exactly as they are'
            cand --expect-code 'The resultCode the reply should carry'
            cand --timeout 'Time budget, e.g. 5s or 1500ms'
            cand --users 'Users generated for authSync (at most 500 per call)'
            cand --license-inner 'Inner step of the License 2.0 signature (decision 5)'
            cand --ca-file 'Also trust this root certificate (PEM), e.g. a staging endpoint behind a private CA'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --allow-unknown 'Accept fields and values the catalog does not list'
            cand --dry-run 'Print the request without sending it'
            cand --curl 'Print an equivalent curl command'
            cand --debug-page 'Use the debugging page''s 20 s budget'
            cand --kit-path-full 'Append Kit paths to the full address instead of its origin'
            cand --no-test-flag 'Send without testFlag (as a live call). Only for endpoints you own. Also needed to send a testFlag other than 1 from --set, --unset or --body-file'
            cand --require-body-sign 'Require a valid Body-Sign on V2 replies too (V1 always requires it)'
            cand -y 'Do not ask before sending to a non-loopback address'
            cand --yes 'Do not ask before sending to a non-loopback address'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;test-endpoint'= {
            cand --endpoint 'The production address under test, e.g. https://isv.example.com/produce'
            cand --protocol 'Protocol of the basic interfaces (default: the profile''s, else v2; with --demo: both, or the one named)'
            cand --key-file 'File holding the key bound to the basic interfaces (also CSM_ACCESS_KEY). orderNotify is signed with this key too: pass the general (通用) interface key for it'
            cand --kit-key-file 'File holding the Kit (joint-operation sync) key (also CSM_KIT_KEY)'
            cand --license-key-file 'File holding the License delivery key (also CSM_LICENSE_KEY)'
            cand --app-public-key 'The RSA public key (PEM: SPKI or PKCS#1, at least 3072 bits) registered for your joint-operation app: applicationSync then carries a real RSA-OAEP ciphertext (Base64) of a fresh clientSecret. Without it, random bytes of a ciphertext''s size stand in, which no private key decrypts. `csm crypto rsa-keygen` makes a pair'
            cand --oaep 'OAEP parameters for --app-public-key (the docs do not name them)'
            cand --suite 'Suites to run (repeatable or comma-separated; default all but sso, which runs when named or with --demo)'
            cand --show 'Which rows the table shows: failures (failures and skips in full, passes folded per suite, a recap last) or all. Default: failures on a terminal, all otherwise'
            cand --junit 'Write a JUnit XML report to FILE (for CI)'
            cand --timeout 'Time budget per call, e.g. 5s or 1500ms (production: 5 s)'
            cand --license-code 'A license code your endpoint knows, carried by the License callbacks instead of made-up ones (needed with --no-test-flag, else the License callbacks are skipped). The run releases it: give one made for testing'
            cand --users 'Users per authSync call (at most 500)'
            cand --license-inner 'Inner step of the License 2.0 signature (decision 5)'
            cand --ca-file 'Also trust this root certificate (PEM), e.g. a staging endpoint behind a private CA'
            cand --login-url 'The sso suite: your redirect URI, where the login portal sends the browser with ?code=…&tenant=… (with --demo: the reference merchant''s /sso/callback)'
            cand --logout-url 'The sso suite: your logout address, expected to 302 to the IdP''s logout (with --demo: the reference merchant''s /sso/logout)'
            cand --idp-listen 'The sso suite: where the stand-in identity provider listens (port 0 picks a free port)'
            cand --idp-url 'The sso suite: how your app reaches the stand-in identity provider, sent as tenantSync''s domainName (default: its own http://ADDR; a remote endpoint needs an address it can reach, e.g. a tunnel to --idp-listen)'
            cand --fault 'With --demo: make the reference merchant wrong on purpose (see `csm serve merchant --help`)'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --debug-page 'Use the debugging page''s 20 s budget instead of the production 5 s (decision 8)'
            cand --kit-path-full 'Append Kit paths to the full address instead of its origin (decision 7)'
            cand --no-test-flag 'Send calls without testFlag (as live orders). Only for endpoints you own'
            cand --require-body-sign 'Require a valid Body-Sign on V2 replies too (V1 always requires it; decision 4)'
            cand -y 'Do not ask before calling a non-loopback address'
            cand --yes 'Do not ask before calling a non-loopback address'
            cand --demo 'Start the reference merchant on a free loopback port and test it (v2 with Kit and License, then v1 with Kit), with keys made for the run'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;load'= {
            cand --endpoint 'The address under load, e.g. https://isv.example.com/produce'
            cand --protocol 'Protocol of the basic interfaces (default: the profile''s, else v2)'
            cand --key-file 'File holding the key bound to the basic interfaces (also CSM_ACCESS_KEY). orderNotify is signed with this key too: pass the general (通用) interface key for it'
            cand --kit-key-file 'File holding the Kit (joint-operation sync) key (also CSM_KIT_KEY)'
            cand --license-key-file 'File holding the License delivery key (also CSM_LICENSE_KEY)'
            cand --rate 'Requests per second, started on schedule whether or not earlier ones answered (open loop); `max` keeps every connection busy instead (closed loop, to find the ceiling)'
            cand --duration 'How long to send, e.g. 30s or 10m (1 ms to 24 h)'
            cand --requests 'How many requests to send (1 to 100,000,000); with --duration, whichever ends first'
            cand --connections 'Requests in flight at most (connections kept open to the endpoint)'
            cand --ramp 'Rise linearly from 0 to --rate over this time first (counted in --duration)'
            cand --timeout 'Time budget per request, e.g. 5s or 1500ms (the marketplace waits 5 s); also how long a request may wait for a free connection'
            cand --activity 'What to send: NAME[:WEIGHT],… from the catalog (default: the dial-test mix of the keys given); `NAME SCENE` picks a scene as the report names it, e.g. ''updateInstanceStatus FREEZE:3''. Calls on an instance use ids the endpoint created'
            cand --scenario 'Run whole orders instead: each virtual order sends newInstance, queryInstance, refreshInstance, updateInstanceStatus and releaseInstance (V1: new, refresh, expire, release) in order on its own instance, the next step once the previous one succeeded'
            cand --set 'Override a field in every request of the activities that have it: `--set productId=P1`, nested `--set a.b=c` (checked as in `csm send`). Repeatable'
            cand --body-file 'Lay this JSON object''s fields over every request of the activities that have them (the other fields, ids included, are still generated afresh)'
            cand --body 'Lay this JSON object''s fields over every request of the activities that have them (the other fields, ids included, are still generated afresh)'
            cand --threshold 'Pass/fail gate (repeatable): p50|p90|p99|p999|max<DURATION, errors<PERCENT, rate>=FRACTION'
            cand --hdr-out 'Write the corrected latency as an HdrHistogram interval log (one histogram per second, microseconds) to FILE, for HdrHistogram''s plotting tools'
            cand --license-inner 'Inner step of the License 2.0 signature (decision 5)'
            cand --ca-file 'Also trust this root certificate (PEM), e.g. a staging endpoint behind a private CA'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --allow-unknown 'Accept `--set` / `--body-file` fields and values the catalog does not list (they go to every activity)'
            cand --kit-path-full 'Append Kit paths to the full address instead of its origin (decision 7)'
            cand -y 'Do not ask before loading a non-loopback address'
            cand --yes 'Do not ask before loading a non-loopback address'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
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
            cand merchant 'A reference merchant endpoint: verifies every callback and answers as KooGallery documents it'
            cand marketplace 'A stand-in marketplace: usage push and license open APIs, and License callbacks'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;serve;merchant'= {
            cand --listen 'Address to listen on; port 0 picks a free port (printed on the first line)'
            cand --key-file 'File holding the key bound to the basic interfaces (also CSM_ACCESS_KEY). orderNotify is signed with this key too: pass the general (通用) interface key for it'
            cand --kit-key-file 'File holding the Kit (joint-operation sync) key (also CSM_KIT_KEY)'
            cand --license-key-file 'File holding the License delivery key (also CSM_LICENSE_KEY)'
            cand --app-private-key 'The joint-operation app''s RSA private key (PKCS#8 PEM, at least 3072 bits): each applicationSync''s clientSecret is decrypted with it, trying the OAEP readings sha256-mgf1sha1, sha256 and sha1 (the one that matched is logged), and refused with 000101 when none does. The login at /sso/callback needs it'
            cand --idp-timeout 'How long a login at /sso/callback waits for the identity provider (token, userinfo)'
            cand --protocol 'Which basic protocol to answer: v2 (POST JSON) or v1 (GET with authToken)'
            cand --fault 'Be wrong on purpose (repeatable): bad-body-sign, body-sign-case (header names in lower case), wrong-code, slow, not-idempotent, accept-bad-signatures, drop-fields, wrong-encryption, stall (stops answering for 2 s, 1 s after the first request); login: sso-secret-encrypted (sends clientSecret still encrypted), sso-code-reuse (a replayed code logs in without the identity provider), sso-skip-userinfo (logs in without asking userinfo)'
            cand --fault-delay 'How long the `slow` fault waits before answering (beyond the 5 s budget by default)'
            cand --window 'Replay window for V2 timestamps: 60s, 5m; a bare number is seconds (1s to 24h)'
            cand --state 'SQLite file for instances, license codes and Kit records. Without it they live in memory, bounded for long load runs: the 100,000 of each written last are kept; nonces are remembered for the replay window (--window) only, so their number is bounded by the requests of one window'
            cand --record 'Append every received request, raw, to FILE as JSON lines (for auditing signatures; cookies, Authorization and the login pages'' codes are recorded as <redacted>)'
            cand --license-inner 'Inner step expected in License 2.0 signatures (decision 5)'
            cand --client-timeout 'Drop a connection whose client sends no complete request head for this long (also between requests on a kept-alive connection), or takes longer than this again to send the body (answered 408): 30s, 1500ms, 2m'
            cand --max-body 'Refuse request bodies larger than this with 413 (bytes, or with a KiB/MiB suffix)'
            cand --keep-alive-max 'Requests one kept-alive connection may carry; the last is answered with `Connection: close`'
            cand --threads 'Requests handled at once (threads; connections themselves cost none)'
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
        &'csm;serve;marketplace'= {
            cand --listen 'Address to listen on, loopback only (the admin API has no authentication); port 0 picks a free port (printed on start)'
            cand --key-file 'The seller key bound to the basic interfaces: verifies usage push signatures'
            cand --ak 'API Gateway access key id accepted by the license open APIs (needs --sk-file; with --sk-file alone, any id is taken)'
            cand --sk-file 'API Gateway secret key accepted by the license open APIs'
            cand --license-key-file 'The key bound to the License delivery interface: signs License callbacks to the merchant'
            cand --merchant-endpoint 'The merchant''s production address, for License callbacks (sent with testFlag "1" unless an admin request asks for "0"; a non-loopback address needs --yes or a confirmation)'
            cand --state 'SQLite state file (accepted usage in table usage_records); in memory when absent'
            cand --fault 'Misbehave on purpose (repeatable): 5xx[=N], slow[=MS], drop-after-store[=N], partial-rejects[=N], batch-limit[=N], license-internal-error. 5xx and drop-after-store act on the first attempt of every N-th usage batch (a retry gets through; N=1: every request)'
            cand --idp-code-ttl 'How long a single sign-on authorization code stays valid (not published; OAuth 2.0 recommends at most 10 minutes), e.g. 300s or 2m'
            cand --idp-access-ttl 'Lifetime of the identity provider''s access tokens (documented: 7200 s)'
            cand --idp-refresh-ttl 'Lifetime of its refresh tokens (documented: 30 days)'
            cand --client-timeout 'Drop a connection whose client sends no complete request head for this long (also between requests on a kept-alive connection), or takes longer than this again to send the body (answered 408): 30s, 1500ms, 2m'
            cand --max-body 'Refuse request bodies larger than this with 413 (bytes, or with a KiB/MiB suffix)'
            cand --keep-alive-max 'Requests one kept-alive connection may carry; the last is answered with `Connection: close`'
            cand --threads 'Requests handled at once (threads; connections themselves cost none)'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --license-plain-sha256 'Sign License callbacks with the plain SHA-256 inner step instead of the keyed HMAC (a third-party reading of the recipe; spec decision 5)'
            cand --yes 'Send License callbacks to a --merchant-endpoint that is not loopback without asking'
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
            cand merchant 'A reference merchant endpoint: verifies every callback and answers as KooGallery documents it'
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
            cand keygen 'Make an Ed25519 key pair: the private key to FILE (0600), the public key to FILE.pub, and a separate short-code secret to FILE.short (0600)'
            cand gen 'Issue signed licenses (codes, short codes or files), or marketplace-shaped PL codes'
            cand inspect 'Decode a code or license file and show every field (the signature only if keys are given)'
            cand validate 'Judge a code or license file: valid, valid-in-grace, expired, bad-signature, ...'
            cand activate 'Activate a marketplace license code (open API, AK/SK-signed)'
            cand heartbeat 'Query a marketplace license code''s status (heartbeat open API, AK/SK-signed); exit 0 only if ALIVE'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;license;keygen'= {
            cand --out 'Private key file to write (0600); the public key goes to FILE.pub, the short-code secret to FILE.short (0600, never printed)'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --force 'Replace existing key files'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;license;gen'= {
            cand --private-key 'Private key file from `csm license keygen`; required, except with --short-secret or --marketplace'
            cand --product 'Product id the license is for; required, except with --marketplace'
            cand --sku 'SKU (skuCode); required, except with --short (which does not carry it) or --marketplace'
            cand --customer 'Customer or instance id; required, except with --short (which does not carry it) or --marketplace'
            cand --expires 'Last valid day, YYYY-MM-DD (UTC), or `never`; required, except with --marketplace'
            cand --issued 'Issue day, YYYY-MM-DD (UTC); today by default'
            cand --features 'Feature names, comma-separated; not with --short, which does not carry them'
            cand --seats 'Seats; 0 means not limited'
            cand --grace-days 'Days after expiry during which the license is still accepted (valid-in-grace)'
            cand --short-secret 'Short-code secret file (FILE.short from `csm license keygen`); with --short'
            cand --count 'How many licenses to make'
            cand --out 'Write the batch to FILE (CSV or JSON lines) instead of printing one per line; an existing FILE only with --force, and never a key file'
            cand --format 'Batch file format (with --out); by default from the --out extension (.csv, else JSON lines)'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --short 'Short code of at most 64 characters, for a marketplace license field. Its tag is an HMAC with the short secret (FILE.short next to --private-key, or --short-secret), not a signature by the private key. Trade-off: it is checked with that same symmetric secret, which can also mint short codes, so ship the secret only where that is acceptable. It does not carry the SKU, customer or features (the product only as a 4-byte digest); 80-bit tag'
            cand --file 'A license file (JSON with a detached signature) instead of a code'
            cand --marketplace 'Codes shaped like the marketplace''s (`PL` + 30 symbols), for test callbacks; unsigned'
            cand --force 'Replace an existing --out file (never a key file given here or beside it)'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;license;inspect'= {
            cand --public-key 'Public key file(s): also check the signature'
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
        &'csm;license;validate'= {
            cand --public-key 'Public key file(s) to trust; keep rotated-out keys here so their licenses stay valid'
            cand --short-secret 'Short-code secret file(s) (FILE.short): needed only for short codes. The secret can also mint short codes, so ship it only where that is acceptable'
            cand --at 'Judge as of this day (YYYY-MM-DD or RFC 3339, UTC) instead of today'
            cand --revoked 'Revocation list: one license id (16 hex digits) or code per line, `#` comments'
            cand --product 'Refuse licenses issued for another product'
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
        &'csm;license;activate'= {
            cand --endpoint 'Base URL of the marketplace open APIs. Else the profile''s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal'
            cand --ak 'API Gateway access key id (AK)'
            cand --sk-file 'File holding the API Gateway secret key (SK); or set CSM_SK'
            cand --timeout 'How long to wait for the answer: 5s, 1500ms; a bare number is seconds (1ms to 10m)'
            cand --ca-file 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA'
            cand --real-effect-time 'When the software actually started, UTC yyyyMMddHHmmss (real_effect_time)'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand -y 'Call the production marketplace without asking when no --endpoint or profile names the destination'
            cand --yes 'Call the production marketplace without asking when no --endpoint or profile names the destination'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;license;heartbeat'= {
            cand --endpoint 'Base URL of the marketplace open APIs. Else the profile''s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal'
            cand --ak 'API Gateway access key id (AK)'
            cand --sk-file 'File holding the API Gateway secret key (SK); or set CSM_SK'
            cand --timeout 'How long to wait for the answer: 5s, 1500ms; a bare number is seconds (1ms to 10m)'
            cand --ca-file 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand -y 'Call the production marketplace without asking when no --endpoint or profile names the destination'
            cand --yes 'Call the production marketplace without asking when no --endpoint or profile names the destination'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;license;help'= {
            cand keygen 'Make an Ed25519 key pair: the private key to FILE (0600), the public key to FILE.pub, and a separate short-code secret to FILE.short (0600)'
            cand gen 'Issue signed licenses (codes, short codes or files), or marketplace-shaped PL codes'
            cand inspect 'Decode a code or license file and show every field (the signature only if keys are given)'
            cand validate 'Judge a code or license file: valid, valid-in-grace, expired, bad-signature, ...'
            cand activate 'Activate a marketplace license code (open API, AK/SK-signed)'
            cand heartbeat 'Query a marketplace license code''s status (heartbeat open API, AK/SK-signed); exit 0 only if ALIVE'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;license;help;keygen'= {
        }
        &'csm;license;help;gen'= {
        }
        &'csm;license;help;inspect'= {
        }
        &'csm;license;help;validate'= {
        }
        &'csm;license;help;activate'= {
        }
        &'csm;license;help;heartbeat'= {
        }
        &'csm;license;help;help'= {
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
            cand status 'Counts by state, the oldest record waiting to be sent, deadlines, the last errors'
            cand export 'Write the records in one state to a file (CSV or JSONL) that upload reads back'
            cand resolve 'Give up on a record the marketplace does not hold, so that a corrected one can be uploaded for its period under a new metering_sn'
            cand agent 'Run the hourly metering agent: events in (spool directory, POST /events), one record per instance and closed hour out, sent like `upload`; /healthz and /metrics'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;usage;validate'= {
            cand --format 'Input format; by default from the extension (.jsonl/.ndjson/.json are JSONL, else CSV)'
            cand --encoding 'The file''s text encoding: gb18030 (or gbk) for CSV saved by Chinese Excel'
            cand --billing 'How the product''s pay-per-use item is billed (sets the reporting deadlines)'
            cand --journal 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite'
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
        &'csm;usage;upload'= {
            cand --format 'Input format; by default from the extension (.jsonl/.ndjson/.json are JSONL, else CSV)'
            cand --encoding 'The file''s text encoding: gb18030 (or gbk) for CSV saved by Chinese Excel'
            cand --billing 'How the product''s pay-per-use item is billed (sets the reporting deadlines)'
            cand --journal 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite'
            cand --key-file 'The seller key bound to the basic interfaces (signs the usage push)'
            cand --endpoint 'Marketplace base URL (scheme, host, port); csm appends the API path. Else the profile''s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal'
            cand --batch 'Records per request (100 to 1000)'
            cand --retries 'Further attempts of a batch after a network error or 5xx (0 to 100)'
            cand --backoff-ms 'First pause between attempts: 500ms, 2s; a bare number is milliseconds, 1ms to 30s (doubles, with jitter, up to 30 s)'
            cand --timeout 'How long to wait for one answer: 30s, 2m; a bare number is seconds, 1s to 1h'
            cand --ca-file 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA'
            cand --usage-value 'How usage_value is written in the body (decision 6: a JSON number)'
            cand --ak 'API Gateway access key id (with --apig)'
            cand --sk-file 'API Gateway secret key file (with --apig)'
            cand --lease 'PostgreSQL journal: how long a batch this process claims stays its own before another uploader may take it over and send it again under the same metering_sn (after a crash): 5m, 90s; a bare number is seconds, 1s to 24h. Must outlast one batch with all its retries'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand -y 'Send to the production marketplace without asking when no --endpoint or profile names the destination'
            cand --yes 'Send to the production marketplace without asking when no --endpoint or profile names the destination'
            cand --apig 'Also sign each request for the API Gateway (AK/SK, SDK-HMAC-SHA256), on top of the body signature; needs --ak and --sk-file (or the profile''s)'
            cand --dry-run 'Check and count everything, journal nothing, send nothing'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;usage;replay'= {
            cand --journal 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite'
            cand --key-file 'The seller key bound to the basic interfaces (signs the usage push)'
            cand --endpoint 'Marketplace base URL (scheme, host, port); csm appends the API path. Else the profile''s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal'
            cand --batch 'Records per request (100 to 1000)'
            cand --retries 'Further attempts of a batch after a network error or 5xx (0 to 100)'
            cand --backoff-ms 'First pause between attempts: 500ms, 2s; a bare number is milliseconds, 1ms to 30s (doubles, with jitter, up to 30 s)'
            cand --timeout 'How long to wait for one answer: 30s, 2m; a bare number is seconds, 1s to 1h'
            cand --ca-file 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA'
            cand --usage-value 'How usage_value is written in the body (decision 6: a JSON number)'
            cand --ak 'API Gateway access key id (with --apig)'
            cand --sk-file 'API Gateway secret key file (with --apig)'
            cand --lease 'PostgreSQL journal: how long a batch this process claims stays its own before another uploader may take it over and send it again under the same metering_sn (after a crash): 5m, 90s; a bare number is seconds, 1s to 24h. Must outlast one batch with all its retries'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand -y 'Send to the production marketplace without asking when no --endpoint or profile names the destination'
            cand --yes 'Send to the production marketplace without asking when no --endpoint or profile names the destination'
            cand --apig 'Also sign each request for the API Gateway (AK/SK, SDK-HMAC-SHA256), on top of the body signature; needs --ak and --sk-file (or the profile''s)'
            cand --skip-rejected 'Leave out records the marketplace rejected for good (resent unchanged, they are refused again; `usage export --state rejected` takes them out to fix)'
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
            cand --journal 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite'
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
            cand --journal 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite'
            cand --state 'Which records: those in this state'
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
        &'csm;usage;resolve'= {
            cand --journal 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite'
            cand --reason 'Why (kept in the journal with who and when): e.g. what 话单管理 showed'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --abandon 'Abandon it: never send it again and free its period for a corrected record under a new metering_sn. Only after 卖家中心 > 交易管理 > 话单管理 shows that the marketplace does not hold it'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;usage;agent'= {
            cand --spool 'Directory the seller''s services drop event files into (.csv with a header, or .jsonl); each is taken in whole and moved to done/, or to failed/ with NAME.error. It must exist (the agent makes only done/ and failed/ in it)'
            cand --listen 'Address of POST /events, /healthz and /metrics (not with --once: it has no listener). Another address than loopback needs a token'
            cand --token-file 'File holding the bearer token POST /events must carry (else CSM_AGENT_TOKEN; else none, on loopback only). Not with --once'
            cand --journal 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite'
            cand --state 'The agent''s own state (events seen, hours) in this SQLite file, for a single agent. Default: <journal>.agent.sqlite; with a PostgreSQL journal, the journal''s database, shared by every agent of that journal'
            cand --key-file 'The seller key bound to the basic interfaces (signs the usage push)'
            cand --endpoint 'Marketplace base URL (scheme, host, port); csm appends the API path. Else the profile''s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal'
            cand --batch 'Records per request (100 to 1000)'
            cand --retries 'Further attempts of a batch after a network error or 5xx (0 to 100)'
            cand --backoff-ms 'First pause between attempts: 500ms, 2s; a bare number is milliseconds, 1ms to 30s (doubles, with jitter, up to 30 s)'
            cand --timeout 'How long to wait for one answer: 30s, 2m; a bare number is seconds, 1s to 1h'
            cand --ca-file 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA'
            cand --usage-value 'How usage_value is written in the body (decision 6: a JSON number)'
            cand --ak 'API Gateway access key id (with --apig)'
            cand --sk-file 'API Gateway secret key file (with --apig)'
            cand --aggregate 'How an hour''s events become its usage_value: their sum, or for a product that bills a level, the highest (max) or the latest (last)'
            cand --grace 'How long after its end an hour stays open for events still on their way: 5m, 90s; a bare number is seconds, 0s to 2h. Above 15m records miss the 0-15 minute window'
            cand --alarm-after 'Stall alarm: /healthz turns red when a closed hour is still unreported this long after its end (and stays red this long after an hour failed): 45m, 2h; a bare number is seconds, 1m to 24h'
            cand --on-alarm 'Shell command run (sh -c) once each time the alarm goes on, and when hours fail; CSM_ALARM_REASON holds why (no other CSM_* variable is passed on: they may hold keys). When the agent stops, one still running gets 5 s, then it is stopped'
            cand --every 'How often the agent takes in the spool, closes due hours and sends: 30s, 1m; a bare number is seconds, 1s to 1h. Not with --once'
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand -y 'Send to the production marketplace without asking when no --endpoint or profile names the destination'
            cand --yes 'Send to the production marketplace without asking when no --endpoint or profile names the destination'
            cand --apig 'Also sign each request for the API Gateway (AK/SK, SDK-HMAC-SHA256), on top of the body signature; needs --ak and --sk-file (or the profile''s)'
            cand --heartbeat-zero 'Close the hours without events of every instance seen in the last 21 days as `zero` (nothing is sent: the marketplace takes usage_value > 0 only)'
            cand --once 'One cycle, then exit: take in the spool, close every hour that is due, send (cron)'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'csm;usage;help'= {
            cand validate 'Check a file against every local rule (nothing is journaled or sent)'
            cand upload 'Journal the records of a file, then send them in signed batches'
            cand replay 'Send again everything in the journal that is not accepted yet (same metering_sn)'
            cand status 'Counts by state, the oldest record waiting to be sent, deadlines, the last errors'
            cand export 'Write the records in one state to a file (CSV or JSONL) that upload reads back'
            cand resolve 'Give up on a record the marketplace does not hold, so that a corrected one can be uploaded for its period under a new metering_sn'
            cand agent 'Run the hourly metering agent: events in (spool directory, POST /events), one record per instance and closed hour out, sent like `upload`; /healthz and /metrics'
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
        &'csm;usage;help;resolve'= {
        }
        &'csm;usage;help;agent'= {
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
        &'csm;profile'= {
            cand --profile 'Profile from the config file (`csm init`) that supplies endpoint and key locations'
            cand --json 'Print one JSON object (or JSON lines for streams) instead of text'
            cand -q 'Print nothing on stdout but the result itself'
            cand --quiet 'Print nothing on stdout but the result itself'
            cand --no-input 'Never prompt; fail with a message naming the flag to pass instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'The profiles in the config file; `*` marks the one in use'
            cand show 'One profile''s settings (key file paths, never key contents)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;profile;list'= {
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
        &'csm;profile;show'= {
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
        &'csm;profile;help'= {
            cand list 'The profiles in the config file; `*` marks the one in use'
            cand show 'One profile''s settings (key file paths, never key contents)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'csm;profile;help;list'= {
        }
        &'csm;profile;help;show'= {
        }
        &'csm;profile;help;help'= {
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
        &'csm;man'= {
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
            cand crypto 'V1 credential encryption (derive the AES key, encrypt, decrypt); a 联营 app''s RSA pair'
            cand send 'Send one signed callback to an endpoint and judge the reply'
            cand test-endpoint 'Play the marketplace against an endpoint: lifecycle, idempotency, negative, dial, readiness'
            cand load 'Signed callbacks at a fixed arrival rate: honest latency percentiles, a CI gate'
            cand serve 'Run a reference merchant endpoint or a stand-in marketplace on this machine'
            cand license 'License codes: keys, generation, inspection, validation, activation'
            cand usage 'Usage records (话单): validate, upload, replay, status, export, resolve'
            cand init 'Interactive setup of a profile (endpoint, protocol, key locations)'
            cand profile 'The profiles `csm init` wrote: list them, show one (key file paths, never keys)'
            cand completions 'Print a shell completion script'
            cand man 'Write the manual pages into a directory (e.g. ~/.local/share/man/man1)'
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
            cand rsa-keygen 'Make the 3072-bit RSA pair of a joint-operation (联营) app: register FILE.pub (SPKI PEM) with the marketplace, give FILE (PKCS#8 PEM) to `csm serve merchant --app-private-key` or your app, which decrypts applicationSync''s clientSecret with it'
        }
        &'csm;help;crypto;derive-key'= {
        }
        &'csm;help;crypto;encrypt'= {
        }
        &'csm;help;crypto;decrypt'= {
        }
        &'csm;help;crypto;rsa-keygen'= {
        }
        &'csm;help;send'= {
        }
        &'csm;help;test-endpoint'= {
        }
        &'csm;help;load'= {
        }
        &'csm;help;serve'= {
            cand merchant 'A reference merchant endpoint: verifies every callback and answers as KooGallery documents it'
            cand marketplace 'A stand-in marketplace: usage push and license open APIs, and License callbacks'
        }
        &'csm;help;serve;merchant'= {
        }
        &'csm;help;serve;marketplace'= {
        }
        &'csm;help;license'= {
            cand keygen 'Make an Ed25519 key pair: the private key to FILE (0600), the public key to FILE.pub, and a separate short-code secret to FILE.short (0600)'
            cand gen 'Issue signed licenses (codes, short codes or files), or marketplace-shaped PL codes'
            cand inspect 'Decode a code or license file and show every field (the signature only if keys are given)'
            cand validate 'Judge a code or license file: valid, valid-in-grace, expired, bad-signature, ...'
            cand activate 'Activate a marketplace license code (open API, AK/SK-signed)'
            cand heartbeat 'Query a marketplace license code''s status (heartbeat open API, AK/SK-signed); exit 0 only if ALIVE'
        }
        &'csm;help;license;keygen'= {
        }
        &'csm;help;license;gen'= {
        }
        &'csm;help;license;inspect'= {
        }
        &'csm;help;license;validate'= {
        }
        &'csm;help;license;activate'= {
        }
        &'csm;help;license;heartbeat'= {
        }
        &'csm;help;usage'= {
            cand validate 'Check a file against every local rule (nothing is journaled or sent)'
            cand upload 'Journal the records of a file, then send them in signed batches'
            cand replay 'Send again everything in the journal that is not accepted yet (same metering_sn)'
            cand status 'Counts by state, the oldest record waiting to be sent, deadlines, the last errors'
            cand export 'Write the records in one state to a file (CSV or JSONL) that upload reads back'
            cand resolve 'Give up on a record the marketplace does not hold, so that a corrected one can be uploaded for its period under a new metering_sn'
            cand agent 'Run the hourly metering agent: events in (spool directory, POST /events), one record per instance and closed hour out, sent like `upload`; /healthz and /metrics'
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
        &'csm;help;usage;resolve'= {
        }
        &'csm;help;usage;agent'= {
        }
        &'csm;help;init'= {
        }
        &'csm;help;profile'= {
            cand list 'The profiles in the config file; `*` marks the one in use'
            cand show 'One profile''s settings (key file paths, never key contents)'
        }
        &'csm;help;profile;list'= {
        }
        &'csm;help;profile;show'= {
        }
        &'csm;help;completions'= {
        }
        &'csm;help;man'= {
        }
        &'csm;help;help'= {
        }
    ]
    $completions[$command]
}
