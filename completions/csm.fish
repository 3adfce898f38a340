# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_csm_global_optspecs
    string join \n json q/quiet profile= no-input h/help V/version
end

function __fish_csm_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_csm_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_csm_using_subcommand
    set -l cmd (__fish_csm_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c csm -n "__fish_csm_needs_command" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_needs_command" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_needs_command" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_needs_command" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_needs_command" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_needs_command" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_needs_command" -f -a "sign" -d 'Compute a signature offline (every KooGallery scheme)'
complete -c csm -n "__fish_csm_needs_command" -f -a "verify" -d 'Check a signature; on a mismatch, show what was signed and find the usual mistake'
complete -c csm -n "__fish_csm_needs_command" -f -a "crypto" -d 'V1 credential encryption (derive the AES key, encrypt, decrypt); a 联营 app\'s RSA pair'
complete -c csm -n "__fish_csm_needs_command" -f -a "send" -d 'Send one signed callback to an endpoint and judge the reply'
complete -c csm -n "__fish_csm_needs_command" -f -a "test-endpoint" -d 'Play the marketplace against an endpoint: lifecycle, idempotency, negative, dial, readiness'
complete -c csm -n "__fish_csm_needs_command" -f -a "load" -d 'Signed callbacks at a fixed arrival rate: honest latency percentiles, a CI gate'
complete -c csm -n "__fish_csm_needs_command" -f -a "serve" -d 'Run a reference merchant endpoint or a stand-in marketplace on this machine'
complete -c csm -n "__fish_csm_needs_command" -f -a "license" -d 'License codes: keys, generation, inspection, validation, activation'
complete -c csm -n "__fish_csm_needs_command" -f -a "usage" -d 'Usage records (话单): validate, upload, replay, status, export, resolve'
complete -c csm -n "__fish_csm_needs_command" -f -a "init" -d 'Interactive setup of a profile (endpoint, protocol, key locations)'
complete -c csm -n "__fish_csm_needs_command" -f -a "profile" -d 'The profiles `csm init` wrote: list them, show one (key file paths, never keys)'
complete -c csm -n "__fish_csm_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c csm -n "__fish_csm_needs_command" -f -a "man" -d 'Write the manual pages into a directory (e.g. ~/.local/share/man/man1)'
complete -c csm -n "__fish_csm_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c csm -n "__fish_csm_using_subcommand sign" -l key-file -d 'File holding the key (its content without a trailing newline); `-` reads standard input' -r -F
complete -c csm -n "__fish_csm_using_subcommand sign" -l timestamp -d 'Timestamp: epoch ms (V2, Kit, License, usage) or yyyyMMddHHmmssSSS (V1); generated when absent' -r
complete -c csm -n "__fish_csm_using_subcommand sign" -l nonce -d 'Nonce (V2, Kit, License, usage); 64 random hex characters when absent' -r
complete -c csm -n "__fish_csm_using_subcommand sign" -l param -d 'A query parameter for saas-v1, decoded (repeatable)' -r
complete -c csm -n "__fish_csm_using_subcommand sign" -l body-file -l body -d 'The body, exact bytes; `-` reads standard input' -r -F
complete -c csm -n "__fish_csm_using_subcommand sign" -l ak -d 'apig: the access key id (AK)' -r
complete -c csm -n "__fish_csm_using_subcommand sign" -l sk-file -d 'apig: file holding the secret key (SK); also CSM_SK' -r -F
complete -c csm -n "__fish_csm_using_subcommand sign" -l date -d 'apig: the X-Sdk-Date value (YYYYMMDDTHHMMSSZ); now when absent' -r
complete -c csm -n "__fish_csm_using_subcommand sign" -l method -d 'apig: the HTTP method' -r
complete -c csm -n "__fish_csm_using_subcommand sign" -l url -d 'The request URL (apig: signed; saas-v1: the parameters in its query are signed too; sign --curl: where the request goes)' -r
complete -c csm -n "__fish_csm_using_subcommand sign" -l header -d 'apig: a header to sign, \'Name: value\' (repeatable; X-Sdk-Date is always signed)' -r
complete -c csm -n "__fish_csm_using_subcommand sign" -l license-inner -d 'license: the inner step (spec decision 5)' -r -f -a "keyed-hmac\t'Keyed inner HMAC, as for the basic interfaces (the documented reading)'
plain-sha256\t'Unkeyed SHA-256 of the canonical body (an alternative reading)'"
complete -c csm -n "__fish_csm_using_subcommand sign" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand sign" -l uppercase -d 'Print a hex signature in upper case with -q and in --json\'s `signature` (the query and header lines always carry it so, as the marketplace sends it)'
complete -c csm -n "__fish_csm_using_subcommand sign" -l curl -d 'Print the whole signed request as a curl command. The address is --url, else the profile\'s endpoint (saas-v1, saas-v2, license) or marketplace endpoint (usage)'
complete -c csm -n "__fish_csm_using_subcommand sign" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand sign" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand sign" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand sign" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c csm -n "__fish_csm_using_subcommand sign" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand verify" -l index -d '`request` with a `--record` file of several requests: which one (1 = the first)' -r
complete -c csm -n "__fish_csm_using_subcommand verify" -l key-file -d 'File holding the key (its content without a trailing newline); `-` reads standard input' -r -F
complete -c csm -n "__fish_csm_using_subcommand verify" -l param -d 'A query parameter for saas-v1, decoded (repeatable)' -r
complete -c csm -n "__fish_csm_using_subcommand verify" -l body-file -l body -d 'The body, exact bytes; `-` reads standard input' -r -F
complete -c csm -n "__fish_csm_using_subcommand verify" -l ak -d 'apig: the access key id (AK)' -r
complete -c csm -n "__fish_csm_using_subcommand verify" -l sk-file -d 'apig: file holding the secret key (SK); also CSM_SK' -r -F
complete -c csm -n "__fish_csm_using_subcommand verify" -l method -d 'apig: the HTTP method' -r
complete -c csm -n "__fish_csm_using_subcommand verify" -l url -d 'The request URL (apig: signed; saas-v1: the parameters in its query are signed too; sign --curl: where the request goes)' -r
complete -c csm -n "__fish_csm_using_subcommand verify" -l header -d 'apig: a header to sign, \'Name: value\' (repeatable; X-Sdk-Date is always signed)' -r
complete -c csm -n "__fish_csm_using_subcommand verify" -l license-inner -d 'license: the inner step (spec decision 5)' -r -f -a "keyed-hmac\t'Keyed inner HMAC, as for the basic interfaces (the documented reading)'
plain-sha256\t'Unkeyed SHA-256 of the canonical body (an alternative reading)'"
complete -c csm -n "__fish_csm_using_subcommand verify" -l signature -d 'The received signature (authToken, x-sign, Body-Sign header or value, Authorization header), as a log shows it: quotes, the header\'s name and URL encoding are undone. saas-v1 also takes it from the authToken in --url\'s query' -r
complete -c csm -n "__fish_csm_using_subcommand verify" -l scheme -d '`response`: the scheme of the call the reply answers; its key checks the Body-Sign, which V1 replies must carry and V2 replies may. Default: the profile\'s protocol (v2: saas-v2), else saas-v1' -r -f -a "saas-v1\t'V1 GET authToken over the query parameters'
saas-v1-kit\t'V1 joint-operation (Kit) POST authToken header over the body fields'
body-sign\t'V1 Body-Sign response header over the exact body bytes'
saas-v2\t'V2 basic callbacks: query signature/timestamp/nonce'
kit\t'V2 Kit callbacks: x-sign header'
license\t'License 2.0 callbacks (V2 basic recipe with the License key)'"
complete -c csm -n "__fish_csm_using_subcommand verify" -l kit-key-file -d 'The Kit key, to check Kit captures and to spot a Kit key used for basic calls' -r -F
complete -c csm -n "__fish_csm_using_subcommand verify" -l license-key-file -d 'The License delivery key, for License 2.0 captures' -r -F
complete -c csm -n "__fish_csm_using_subcommand verify" -l window -d 'Replay window for V2 timestamps (spec decision 3): 60s, 5m; a bare number is seconds (1s to 24h)' -r
complete -c csm -n "__fish_csm_using_subcommand verify" -l timestamp -d 'The timestamp that was sent: epoch ms (V2, Kit, License, usage; required) or yyyyMMddHHmmssSSS (V1, its timeStamp parameter)' -r
complete -c csm -n "__fish_csm_using_subcommand verify" -l nonce -d 'The nonce that was sent (V2, Kit, License, usage; required)' -r
complete -c csm -n "__fish_csm_using_subcommand verify" -l date -d 'apig: the X-Sdk-Date that was sent (YYYYMMDDTHHMMSSZ; required)' -r
complete -c csm -n "__fish_csm_using_subcommand verify" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand verify" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand verify" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand verify" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c csm -n "__fish_csm_using_subcommand verify" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand crypto; and not __fish_seen_subcommand_from derive-key encrypt decrypt rsa-keygen help" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand crypto; and not __fish_seen_subcommand_from derive-key encrypt decrypt rsa-keygen help" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand crypto; and not __fish_seen_subcommand_from derive-key encrypt decrypt rsa-keygen help" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand crypto; and not __fish_seen_subcommand_from derive-key encrypt decrypt rsa-keygen help" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand crypto; and not __fish_seen_subcommand_from derive-key encrypt decrypt rsa-keygen help" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand crypto; and not __fish_seen_subcommand_from derive-key encrypt decrypt rsa-keygen help" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand crypto; and not __fish_seen_subcommand_from derive-key encrypt decrypt rsa-keygen help" -f -a "derive-key" -d 'Print the AES key derived from the access key (hex)'
complete -c csm -n "__fish_csm_using_subcommand crypto; and not __fish_seen_subcommand_from derive-key encrypt decrypt rsa-keygen help" -f -a "encrypt" -d 'Encrypt VALUE: prints the 16-character IV followed by Base64'
complete -c csm -n "__fish_csm_using_subcommand crypto; and not __fish_seen_subcommand_from derive-key encrypt decrypt rsa-keygen help" -f -a "decrypt" -d 'Decrypt VALUE (IV prefix + Base64): prints the plaintext'
complete -c csm -n "__fish_csm_using_subcommand crypto; and not __fish_seen_subcommand_from derive-key encrypt decrypt rsa-keygen help" -f -a "rsa-keygen" -d 'Make the 3072-bit RSA pair of a joint-operation (联营) app: register FILE.pub (SPKI PEM) with the marketplace, give FILE (PKCS#8 PEM) to `csm serve merchant --app-private-key` or your app, which decrypts applicationSync\'s clientSecret with it'
complete -c csm -n "__fish_csm_using_subcommand crypto; and not __fish_seen_subcommand_from derive-key encrypt decrypt rsa-keygen help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from derive-key" -l key-file -d 'File holding the access key (its content without a trailing newline); also CSM_ACCESS_KEY' -r -F
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from derive-key" -l encrypt-type -d '1 = AES-256 (the default when a response omits encryptType), 2 = AES-128' -r
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from derive-key" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from derive-key" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from derive-key" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from derive-key" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from derive-key" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from derive-key" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from encrypt" -l key-file -d 'File holding the access key (its content without a trailing newline); also CSM_ACCESS_KEY' -r -F
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from encrypt" -l encrypt-type -d '1 = AES-256 (the default when a response omits encryptType), 2 = AES-128' -r
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from encrypt" -l iv -d 'The IV string (16 ASCII characters); random alphanumerics when absent' -r
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from encrypt" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from encrypt" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from encrypt" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from encrypt" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from encrypt" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from encrypt" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from decrypt" -l key-file -d 'File holding the access key (its content without a trailing newline); also CSM_ACCESS_KEY' -r -F
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from decrypt" -l encrypt-type -d '1 = AES-256 (the default when a response omits encryptType), 2 = AES-128' -r
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from decrypt" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from decrypt" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from decrypt" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from decrypt" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from decrypt" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from decrypt" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from rsa-keygen" -l out -d 'Private key file to write (PKCS#8 PEM, 0600); the public key goes to FILE.pub' -r -F
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from rsa-keygen" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from rsa-keygen" -l force -d 'Replace existing key files'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from rsa-keygen" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from rsa-keygen" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from rsa-keygen" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from rsa-keygen" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from rsa-keygen" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from help" -f -a "derive-key" -d 'Print the AES key derived from the access key (hex)'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from help" -f -a "encrypt" -d 'Encrypt VALUE: prints the 16-character IV followed by Base64'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from help" -f -a "decrypt" -d 'Decrypt VALUE (IV prefix + Base64): prints the plaintext'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from help" -f -a "rsa-keygen" -d 'Make the 3072-bit RSA pair of a joint-operation (联营) app: register FILE.pub (SPKI PEM) with the marketplace, give FILE (PKCS#8 PEM) to `csm serve merchant --app-private-key` or your app, which decrypts applicationSync\'s clientSecret with it'
complete -c csm -n "__fish_csm_using_subcommand crypto; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c csm -n "__fish_csm_using_subcommand send" -l scene -d 'Scene or status for activities that have one (RENEWAL, FREEZE, ...)' -r
complete -c csm -n "__fish_csm_using_subcommand send" -l endpoint -d 'The production address, e.g. https://isv.example.com/produce' -r
complete -c csm -n "__fish_csm_using_subcommand send" -l protocol -d 'Callback protocol version (default: the profile\'s, else v2)' -r -f -a "v1\t''
v2\t''"
complete -c csm -n "__fish_csm_using_subcommand send" -l key-file -d 'File holding the key bound to the basic interfaces (also CSM_ACCESS_KEY). orderNotify is signed with this key too: pass the general (通用) interface key for it' -r -F
complete -c csm -n "__fish_csm_using_subcommand send" -l kit-key-file -d 'File holding the Kit (joint-operation sync) key (also CSM_KIT_KEY)' -r -F
complete -c csm -n "__fish_csm_using_subcommand send" -l license-key-file -d 'File holding the License delivery key (also CSM_LICENSE_KEY)' -r -F
complete -c csm -n "__fish_csm_using_subcommand send" -l app-public-key -d 'The RSA public key (PEM: SPKI or PKCS#1, at least 3072 bits) registered for your joint-operation app: applicationSync then carries a real RSA-OAEP ciphertext (Base64) of a fresh clientSecret. Without it, random bytes of a ciphertext\'s size stand in, which no private key decrypts. `csm crypto rsa-keygen` makes a pair' -r -F
complete -c csm -n "__fish_csm_using_subcommand send" -l oaep -d 'OAEP parameters for --app-public-key (the docs do not name them)' -r -f -a "sha256-mgf1sha1\t'SHA-256 digest, MGF1-SHA-1: Java\'s RSA/ECB/OAEPWithSHA-256AndMGF1Padding'
sha256\t'SHA-256 digest and MGF1-SHA-256'
sha1\t'SHA-1 digest and MGF1-SHA-1'"
complete -c csm -n "__fish_csm_using_subcommand send" -l set -d 'Override a field: `--set instanceId=abc`, nested `--set a.b=c`; JSON for integer, array and object fields. Repeatable' -r
complete -c csm -n "__fish_csm_using_subcommand send" -l unset -d 'Leave a field out. Repeatable' -r
complete -c csm -n "__fish_csm_using_subcommand send" -l body-file -l body -d 'Start from this JSON object instead of generated values; its bytes are sent (and signed) exactly as they are' -r -F
complete -c csm -n "__fish_csm_using_subcommand send" -l expect-code -d 'The resultCode the reply should carry' -r
complete -c csm -n "__fish_csm_using_subcommand send" -l timeout -d 'Time budget, e.g. 5s or 1500ms' -r
complete -c csm -n "__fish_csm_using_subcommand send" -l users -d 'Users generated for authSync (at most 500 per call)' -r
complete -c csm -n "__fish_csm_using_subcommand send" -l license-inner -d 'Inner step of the License 2.0 signature (decision 5)' -r -f -a "keyed-hmac\t'Keyed inner HMAC, as for the basic interfaces (the documented reading)'
plain-sha256\t'Unkeyed SHA-256 of the canonical body (an alternative reading)'"
complete -c csm -n "__fish_csm_using_subcommand send" -l ca-file -d 'Also trust this root certificate (PEM), e.g. a staging endpoint behind a private CA' -r -F
complete -c csm -n "__fish_csm_using_subcommand send" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand send" -l allow-unknown -d 'Accept fields and values the catalog does not list'
complete -c csm -n "__fish_csm_using_subcommand send" -l dry-run -d 'Print the request without sending it'
complete -c csm -n "__fish_csm_using_subcommand send" -l curl -d 'Print an equivalent curl command'
complete -c csm -n "__fish_csm_using_subcommand send" -l debug-page -d 'Use the debugging page\'s 20 s budget'
complete -c csm -n "__fish_csm_using_subcommand send" -l kit-path-full -d 'Append Kit paths to the full address instead of its origin'
complete -c csm -n "__fish_csm_using_subcommand send" -l no-test-flag -d 'Send without testFlag (as a live call). Only for endpoints you own. Also needed to send a testFlag other than 1 from --set, --unset or --body-file'
complete -c csm -n "__fish_csm_using_subcommand send" -l require-body-sign -d 'Require a valid Body-Sign on V2 replies too (V1 always requires it)'
complete -c csm -n "__fish_csm_using_subcommand send" -s y -l yes -d 'Do not ask before sending to a non-loopback address'
complete -c csm -n "__fish_csm_using_subcommand send" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand send" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand send" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand send" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c csm -n "__fish_csm_using_subcommand send" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l endpoint -d 'The production address under test, e.g. https://isv.example.com/produce' -r
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l protocol -d 'Protocol of the basic interfaces (default: the profile\'s, else v2; with --demo: both, or the one named)' -r -f -a "v1\t''
v2\t''"
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l key-file -d 'File holding the key bound to the basic interfaces (also CSM_ACCESS_KEY). orderNotify is signed with this key too: pass the general (通用) interface key for it' -r -F
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l kit-key-file -d 'File holding the Kit (joint-operation sync) key (also CSM_KIT_KEY)' -r -F
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l license-key-file -d 'File holding the License delivery key (also CSM_LICENSE_KEY)' -r -F
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l app-public-key -d 'The RSA public key (PEM: SPKI or PKCS#1, at least 3072 bits) registered for your joint-operation app: applicationSync then carries a real RSA-OAEP ciphertext (Base64) of a fresh clientSecret. Without it, random bytes of a ciphertext\'s size stand in, which no private key decrypts. `csm crypto rsa-keygen` makes a pair' -r -F
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l oaep -d 'OAEP parameters for --app-public-key (the docs do not name them)' -r -f -a "sha256-mgf1sha1\t'SHA-256 digest, MGF1-SHA-1: Java\'s RSA/ECB/OAEPWithSHA-256AndMGF1Padding'
sha256\t'SHA-256 digest and MGF1-SHA-256'
sha1\t'SHA-1 digest and MGF1-SHA-1'"
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l suite -d 'Suites to run (repeatable or comma-separated; default all but sso, which runs when named or with --demo)' -r -f -a "lifecycle\t''
idempotency\t''
negative\t''
dial\t''
readiness\t''
sso\t'Single sign-on through the stand-in identity provider: only when asked for'"
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l show -d 'Which rows the table shows: failures (failures and skips in full, passes folded per suite, a recap last) or all. Default: failures on a terminal, all otherwise' -r -f -a "all\t'Every check'
failures\t'Failures and skips in full, passes folded per suite, a recap of failures last'"
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l junit -d 'Write a JUnit XML report to FILE (for CI)' -r -F
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l timeout -d 'Time budget per call, e.g. 5s or 1500ms (production: 5 s)' -r
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l license-code -d 'A license code your endpoint knows, carried by the License callbacks instead of made-up ones (needed with --no-test-flag, else the License callbacks are skipped). The run releases it: give one made for testing' -r
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l users -d 'Users per authSync call (at most 500)' -r
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l license-inner -d 'Inner step of the License 2.0 signature (decision 5)' -r -f -a "keyed-hmac\t'Keyed inner HMAC, as for the basic interfaces (the documented reading)'
plain-sha256\t'Unkeyed SHA-256 of the canonical body (an alternative reading)'"
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l ca-file -d 'Also trust this root certificate (PEM), e.g. a staging endpoint behind a private CA' -r -F
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l login-url -d 'The sso suite: your redirect URI, where the login portal sends the browser with ?code=…&tenant=… (with --demo: the reference merchant\'s /sso/callback)' -r
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l logout-url -d 'The sso suite: your logout address, expected to 302 to the IdP\'s logout (with --demo: the reference merchant\'s /sso/logout)' -r
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l idp-listen -d 'The sso suite: where the stand-in identity provider listens (port 0 picks a free port)' -r
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l idp-url -d 'The sso suite: how your app reaches the stand-in identity provider, sent as tenantSync\'s domainName (default: its own http://ADDR; a remote endpoint needs an address it can reach, e.g. a tunnel to --idp-listen)' -r
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l fault -d 'With --demo: make the reference merchant wrong on purpose (see `csm serve merchant --help`)' -r -f -a "bad-body-sign\t''
body-sign-case\t''
wrong-code\t''
slow\t''
not-idempotent\t''
accept-bad-signatures\t''
drop-fields\t''
wrong-encryption\t''
stall\t''
sso-secret-encrypted\t''
sso-code-reuse\t''
sso-skip-userinfo\t''"
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l debug-page -d 'Use the debugging page\'s 20 s budget instead of the production 5 s (decision 8)'
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l kit-path-full -d 'Append Kit paths to the full address instead of its origin (decision 7)'
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l no-test-flag -d 'Send calls without testFlag (as live orders). Only for endpoints you own'
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l require-body-sign -d 'Require a valid Body-Sign on V2 replies too (V1 always requires it; decision 4)'
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -s y -l yes -d 'Do not ask before calling a non-loopback address'
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l demo -d 'Start the reference merchant on a free loopback port and test it (v2 with Kit and License, then v1 with Kit), with keys made for the run'
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c csm -n "__fish_csm_using_subcommand test-endpoint" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand load" -l endpoint -d 'The address under load, e.g. https://isv.example.com/produce' -r
complete -c csm -n "__fish_csm_using_subcommand load" -l protocol -d 'Protocol of the basic interfaces (default: the profile\'s, else v2)' -r -f -a "v1\t''
v2\t''"
complete -c csm -n "__fish_csm_using_subcommand load" -l key-file -d 'File holding the key bound to the basic interfaces (also CSM_ACCESS_KEY). orderNotify is signed with this key too: pass the general (通用) interface key for it' -r -F
complete -c csm -n "__fish_csm_using_subcommand load" -l kit-key-file -d 'File holding the Kit (joint-operation sync) key (also CSM_KIT_KEY)' -r -F
complete -c csm -n "__fish_csm_using_subcommand load" -l license-key-file -d 'File holding the License delivery key (also CSM_LICENSE_KEY)' -r -F
complete -c csm -n "__fish_csm_using_subcommand load" -l rate -d 'Requests per second, started on schedule whether or not earlier ones answered (open loop); `max` keeps every connection busy instead (closed loop, to find the ceiling)' -r
complete -c csm -n "__fish_csm_using_subcommand load" -l duration -d 'How long to send, e.g. 30s or 10m (1 ms to 24 h)' -r
complete -c csm -n "__fish_csm_using_subcommand load" -l requests -d 'How many requests to send (1 to 100,000,000); with --duration, whichever ends first' -r
complete -c csm -n "__fish_csm_using_subcommand load" -l connections -d 'Requests in flight at most (connections kept open to the endpoint)' -r
complete -c csm -n "__fish_csm_using_subcommand load" -l ramp -d 'Rise linearly from 0 to --rate over this time first (counted in --duration)' -r
complete -c csm -n "__fish_csm_using_subcommand load" -l timeout -d 'Time budget per request, e.g. 5s or 1500ms (the marketplace waits 5 s); also how long a request may wait for a free connection' -r
complete -c csm -n "__fish_csm_using_subcommand load" -l activity -d 'What to send: NAME[:WEIGHT],… from the catalog (default: the dial-test mix of the keys given); `NAME SCENE` picks a scene as the report names it, e.g. \'updateInstanceStatus FREEZE:3\'. Calls on an instance use ids the endpoint created' -r -f -a "allOrgSync\t''
applicationSync\t''
authSync\t''
changeInstanceCheck\t''
expireInstance\t''
instanceStatus\t''
newInstance\t''
orderNotify\t''
queryInstance\t''
refreshInstance\t''
refreshLicenseCode\t''
releaseInstance\t''
releaseLicenseCode\t''
singleOrgSync\t''
tenantSync\t''
updateInstanceStatus\t''
updateLicenseCodeStatus\t''
upgrade\t''
upgradeInstance\t''"
complete -c csm -n "__fish_csm_using_subcommand load" -l scenario -d 'Run whole orders instead: each virtual order sends newInstance, queryInstance, refreshInstance, updateInstanceStatus and releaseInstance (V1: new, refresh, expire, release) in order on its own instance, the next step once the previous one succeeded' -r -f -a "lifecycle\t'new → query → refresh → status → release, per virtual order'"
complete -c csm -n "__fish_csm_using_subcommand load" -l set -d 'Override a field in every request of the activities that have it: `--set productId=P1`, nested `--set a.b=c` (checked as in `csm send`). Repeatable' -r
complete -c csm -n "__fish_csm_using_subcommand load" -l body-file -l body -d 'Lay this JSON object\'s fields over every request of the activities that have them (the other fields, ids included, are still generated afresh)' -r -F
complete -c csm -n "__fish_csm_using_subcommand load" -l threshold -d 'Pass/fail gate (repeatable): p50|p90|p99|p999|max<DURATION, errors<PERCENT, rate>=FRACTION' -r
complete -c csm -n "__fish_csm_using_subcommand load" -l hdr-out -d 'Write the corrected latency as an HdrHistogram interval log (one histogram per second, microseconds) to FILE, for HdrHistogram\'s plotting tools' -r -F
complete -c csm -n "__fish_csm_using_subcommand load" -l license-inner -d 'Inner step of the License 2.0 signature (decision 5)' -r -f -a "keyed-hmac\t'Keyed inner HMAC, as for the basic interfaces (the documented reading)'
plain-sha256\t'Unkeyed SHA-256 of the canonical body (an alternative reading)'"
complete -c csm -n "__fish_csm_using_subcommand load" -l ca-file -d 'Also trust this root certificate (PEM), e.g. a staging endpoint behind a private CA' -r -F
complete -c csm -n "__fish_csm_using_subcommand load" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand load" -l allow-unknown -d 'Accept `--set` / `--body-file` fields and values the catalog does not list (they go to every activity)'
complete -c csm -n "__fish_csm_using_subcommand load" -l kit-path-full -d 'Append Kit paths to the full address instead of its origin (decision 7)'
complete -c csm -n "__fish_csm_using_subcommand load" -s y -l yes -d 'Do not ask before loading a non-loopback address'
complete -c csm -n "__fish_csm_using_subcommand load" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand load" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand load" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand load" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c csm -n "__fish_csm_using_subcommand load" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand serve; and not __fish_seen_subcommand_from merchant marketplace help" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand serve; and not __fish_seen_subcommand_from merchant marketplace help" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand serve; and not __fish_seen_subcommand_from merchant marketplace help" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand serve; and not __fish_seen_subcommand_from merchant marketplace help" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand serve; and not __fish_seen_subcommand_from merchant marketplace help" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand serve; and not __fish_seen_subcommand_from merchant marketplace help" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand serve; and not __fish_seen_subcommand_from merchant marketplace help" -f -a "merchant" -d 'A reference merchant endpoint: verifies every callback and answers as KooGallery documents it'
complete -c csm -n "__fish_csm_using_subcommand serve; and not __fish_seen_subcommand_from merchant marketplace help" -f -a "marketplace" -d 'A stand-in marketplace: usage push and license open APIs, and License callbacks'
complete -c csm -n "__fish_csm_using_subcommand serve; and not __fish_seen_subcommand_from merchant marketplace help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l listen -d 'Address to listen on; port 0 picks a free port (printed on the first line)' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l key-file -d 'File holding the key bound to the basic interfaces (also CSM_ACCESS_KEY). orderNotify is signed with this key too: pass the general (通用) interface key for it' -r -F
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l kit-key-file -d 'File holding the Kit (joint-operation sync) key (also CSM_KIT_KEY)' -r -F
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l license-key-file -d 'File holding the License delivery key (also CSM_LICENSE_KEY)' -r -F
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l app-private-key -d 'The joint-operation app\'s RSA private key (PKCS#8 PEM, at least 3072 bits): each applicationSync\'s clientSecret is decrypted with it, trying the OAEP readings sha256-mgf1sha1, sha256 and sha1 (the one that matched is logged), and refused with 000101 when none does. The login at /sso/callback needs it' -r -F
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l idp-timeout -d 'How long a login at /sso/callback waits for the identity provider (token, userinfo)' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l protocol -d 'Which basic protocol to answer: v2 (POST JSON) or v1 (GET with authToken)' -r -f -a "v1\t''
v2\t''"
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l fault -d 'Be wrong on purpose (repeatable): bad-body-sign, body-sign-case (header names in lower case), wrong-code, slow, not-idempotent, accept-bad-signatures, drop-fields, wrong-encryption, stall (stops answering for 2 s, 1 s after the first request); login: sso-secret-encrypted (sends clientSecret still encrypted), sso-code-reuse (a replayed code logs in without the identity provider), sso-skip-userinfo (logs in without asking userinfo)' -r -f -a "bad-body-sign\t''
body-sign-case\t''
wrong-code\t''
slow\t''
not-idempotent\t''
accept-bad-signatures\t''
drop-fields\t''
wrong-encryption\t''
stall\t''
sso-secret-encrypted\t''
sso-code-reuse\t''
sso-skip-userinfo\t''"
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l fault-delay -d 'How long the `slow` fault waits before answering (beyond the 5 s budget by default)' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l window -d 'Replay window for V2 timestamps: 60s, 5m; a bare number is seconds (1s to 24h)' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l state -d 'SQLite file for instances, license codes and Kit records. Without it they live in memory, bounded for long load runs: the 100,000 of each written last are kept; nonces are remembered for the replay window (--window) only, so their number is bounded by the requests of one window' -r -F
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l record -d 'Append every received request, raw, to FILE as JSON lines (for auditing signatures; cookies, Authorization and the login pages\' codes are recorded as <redacted>)' -r -F
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l license-inner -d 'Inner step expected in License 2.0 signatures (decision 5)' -r -f -a "keyed-hmac\t'Keyed inner HMAC, as for the basic interfaces (the documented reading)'
plain-sha256\t'Unkeyed SHA-256 of the canonical body (an alternative reading)'"
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l client-timeout -d 'Drop a connection whose client sends no complete request head for this long (also between requests on a kept-alive connection), or takes longer than this again to send the body (answered 408): 30s, 1500ms, 2m' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l max-body -d 'Refuse request bodies larger than this with 413 (bytes, or with a KiB/MiB suffix)' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l keep-alive-max -d 'Requests one kept-alive connection may carry; the last is answered with `Connection: close`' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l threads -d 'Requests handled at once (threads; connections themselves cost none)' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from merchant" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l listen -d 'Address to listen on, loopback only (the admin API has no authentication); port 0 picks a free port (printed on start)' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l key-file -d 'The seller key bound to the basic interfaces: verifies usage push signatures' -r -F
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l ak -d 'API Gateway access key id accepted by the license open APIs (needs --sk-file; with --sk-file alone, any id is taken)' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l sk-file -d 'API Gateway secret key accepted by the license open APIs' -r -F
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l license-key-file -d 'The key bound to the License delivery interface: signs License callbacks to the merchant' -r -F
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l merchant-endpoint -d 'The merchant\'s production address, for License callbacks (sent with testFlag "1" unless an admin request asks for "0"; a non-loopback address needs --yes or a confirmation)' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l state -d 'SQLite state file (accepted usage in table usage_records); in memory when absent' -r -F
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l fault -d 'Misbehave on purpose (repeatable): 5xx[=N], slow[=MS], drop-after-store[=N], partial-rejects[=N], batch-limit[=N], license-internal-error. 5xx and drop-after-store act on the first attempt of every N-th usage batch (a retry gets through; N=1: every request)' -r -f -a "5xx\t''
slow\t''
drop-after-store\t''
partial-rejects\t''
batch-limit\t''
license-internal-error\t''"
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l idp-code-ttl -d 'How long a single sign-on authorization code stays valid (not published; OAuth 2.0 recommends at most 10 minutes), e.g. 300s or 2m' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l idp-access-ttl -d 'Lifetime of the identity provider\'s access tokens (documented: 7200 s)' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l idp-refresh-ttl -d 'Lifetime of its refresh tokens (documented: 30 days)' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l client-timeout -d 'Drop a connection whose client sends no complete request head for this long (also between requests on a kept-alive connection), or takes longer than this again to send the body (answered 408): 30s, 1500ms, 2m' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l max-body -d 'Refuse request bodies larger than this with 413 (bytes, or with a KiB/MiB suffix)' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l keep-alive-max -d 'Requests one kept-alive connection may carry; the last is answered with `Connection: close`' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l threads -d 'Requests handled at once (threads; connections themselves cost none)' -r
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l license-plain-sha256 -d 'Sign License callbacks with the plain SHA-256 inner step instead of the keyed HMAC (a third-party reading of the recipe; spec decision 5)'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l yes -d 'Send License callbacks to a --merchant-endpoint that is not loopback without asking'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from marketplace" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from help" -f -a "merchant" -d 'A reference merchant endpoint: verifies every callback and answers as KooGallery documents it'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from help" -f -a "marketplace" -d 'A stand-in marketplace: usage push and license open APIs, and License callbacks'
complete -c csm -n "__fish_csm_using_subcommand serve; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c csm -n "__fish_csm_using_subcommand license; and not __fish_seen_subcommand_from keygen gen inspect validate activate heartbeat help" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand license; and not __fish_seen_subcommand_from keygen gen inspect validate activate heartbeat help" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand license; and not __fish_seen_subcommand_from keygen gen inspect validate activate heartbeat help" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand license; and not __fish_seen_subcommand_from keygen gen inspect validate activate heartbeat help" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand license; and not __fish_seen_subcommand_from keygen gen inspect validate activate heartbeat help" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand license; and not __fish_seen_subcommand_from keygen gen inspect validate activate heartbeat help" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand license; and not __fish_seen_subcommand_from keygen gen inspect validate activate heartbeat help" -f -a "keygen" -d 'Make an Ed25519 key pair: the private key to FILE (0600), the public key to FILE.pub, and a separate short-code secret to FILE.short (0600)'
complete -c csm -n "__fish_csm_using_subcommand license; and not __fish_seen_subcommand_from keygen gen inspect validate activate heartbeat help" -f -a "gen" -d 'Issue signed licenses (codes, short codes or files), or marketplace-shaped PL codes'
complete -c csm -n "__fish_csm_using_subcommand license; and not __fish_seen_subcommand_from keygen gen inspect validate activate heartbeat help" -f -a "inspect" -d 'Decode a code or license file and show every field (the signature only if keys are given)'
complete -c csm -n "__fish_csm_using_subcommand license; and not __fish_seen_subcommand_from keygen gen inspect validate activate heartbeat help" -f -a "validate" -d 'Judge a code or license file: valid, valid-in-grace, expired, bad-signature, ...'
complete -c csm -n "__fish_csm_using_subcommand license; and not __fish_seen_subcommand_from keygen gen inspect validate activate heartbeat help" -f -a "activate" -d 'Activate a marketplace license code (open API, AK/SK-signed)'
complete -c csm -n "__fish_csm_using_subcommand license; and not __fish_seen_subcommand_from keygen gen inspect validate activate heartbeat help" -f -a "heartbeat" -d 'Query a marketplace license code\'s status (heartbeat open API, AK/SK-signed); exit 0 only if ALIVE'
complete -c csm -n "__fish_csm_using_subcommand license; and not __fish_seen_subcommand_from keygen gen inspect validate activate heartbeat help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from keygen" -l out -d 'Private key file to write (0600); the public key goes to FILE.pub, the short-code secret to FILE.short (0600, never printed)' -r -F
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from keygen" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from keygen" -l force -d 'Replace existing key files'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from keygen" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from keygen" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from keygen" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from keygen" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from keygen" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l private-key -d 'Private key file from `csm license keygen`; required, except with --short-secret or --marketplace' -r -F
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l product -d 'Product id the license is for; required, except with --marketplace' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l sku -d 'SKU (skuCode); required, except with --short (which does not carry it) or --marketplace' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l customer -d 'Customer or instance id; required, except with --short (which does not carry it) or --marketplace' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l expires -d 'Last valid day, YYYY-MM-DD (UTC), or `never`; required, except with --marketplace' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l issued -d 'Issue day, YYYY-MM-DD (UTC); today by default' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l features -d 'Feature names, comma-separated; not with --short, which does not carry them' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l seats -d 'Seats; 0 means not limited' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l grace-days -d 'Days after expiry during which the license is still accepted (valid-in-grace)' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l short-secret -d 'Short-code secret file (FILE.short from `csm license keygen`); with --short' -r -F
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l count -d 'How many licenses to make' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l out -d 'Write the batch to FILE (CSV or JSON lines) instead of printing one per line; an existing FILE only with --force, and never a key file' -r -F
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l format -d 'Batch file format (with --out); by default from the --out extension (.csv, else JSON lines)' -r -f -a "csv\t''
jsonl\t''"
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l short -d 'Short code of at most 64 characters, for a marketplace license field. Its tag is an HMAC with the short secret (FILE.short next to --private-key, or --short-secret), not a signature by the private key. Trade-off: it is checked with that same symmetric secret, which can also mint short codes, so ship the secret only where that is acceptable. It does not carry the SKU, customer or features (the product only as a 4-byte digest); 80-bit tag'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l file -d 'A license file (JSON with a detached signature) instead of a code'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l marketplace -d 'Codes shaped like the marketplace\'s (`PL` + 30 symbols), for test callbacks; unsigned'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l force -d 'Replace an existing --out file (never a key file given here or beside it)'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from gen" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from inspect" -l public-key -d 'Public key file(s): also check the signature' -r -F
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from inspect" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from inspect" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from inspect" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from inspect" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from inspect" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from inspect" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from validate" -l public-key -d 'Public key file(s) to trust; keep rotated-out keys here so their licenses stay valid' -r -F
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from validate" -l short-secret -d 'Short-code secret file(s) (FILE.short): needed only for short codes. The secret can also mint short codes, so ship it only where that is acceptable' -r -F
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from validate" -l at -d 'Judge as of this day (YYYY-MM-DD or RFC 3339, UTC) instead of today' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from validate" -l revoked -d 'Revocation list: one license id (16 hex digits) or code per line, `#` comments' -r -F
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from validate" -l product -d 'Refuse licenses issued for another product' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from validate" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from validate" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from validate" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from validate" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from validate" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from validate" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from activate" -l endpoint -d 'Base URL of the marketplace open APIs. Else the profile\'s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from activate" -l ak -d 'API Gateway access key id (AK)' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from activate" -l sk-file -d 'File holding the API Gateway secret key (SK); or set CSM_SK' -r -F
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from activate" -l timeout -d 'How long to wait for the answer: 5s, 1500ms; a bare number is seconds (1ms to 10m)' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from activate" -l ca-file -d 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA' -r -F
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from activate" -l real-effect-time -d 'When the software actually started, UTC yyyyMMddHHmmss (real_effect_time)' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from activate" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from activate" -s y -l yes -d 'Call the production marketplace without asking when no --endpoint or profile names the destination'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from activate" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from activate" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from activate" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from activate" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from activate" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from heartbeat" -l endpoint -d 'Base URL of the marketplace open APIs. Else the profile\'s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from heartbeat" -l ak -d 'API Gateway access key id (AK)' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from heartbeat" -l sk-file -d 'File holding the API Gateway secret key (SK); or set CSM_SK' -r -F
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from heartbeat" -l timeout -d 'How long to wait for the answer: 5s, 1500ms; a bare number is seconds (1ms to 10m)' -r
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from heartbeat" -l ca-file -d 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA' -r -F
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from heartbeat" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from heartbeat" -s y -l yes -d 'Call the production marketplace without asking when no --endpoint or profile names the destination'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from heartbeat" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from heartbeat" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from heartbeat" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from heartbeat" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from heartbeat" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from help" -f -a "keygen" -d 'Make an Ed25519 key pair: the private key to FILE (0600), the public key to FILE.pub, and a separate short-code secret to FILE.short (0600)'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from help" -f -a "gen" -d 'Issue signed licenses (codes, short codes or files), or marketplace-shaped PL codes'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from help" -f -a "inspect" -d 'Decode a code or license file and show every field (the signature only if keys are given)'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from help" -f -a "validate" -d 'Judge a code or license file: valid, valid-in-grace, expired, bad-signature, ...'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from help" -f -a "activate" -d 'Activate a marketplace license code (open API, AK/SK-signed)'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from help" -f -a "heartbeat" -d 'Query a marketplace license code\'s status (heartbeat open API, AK/SK-signed); exit 0 only if ALIVE'
complete -c csm -n "__fish_csm_using_subcommand license; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c csm -n "__fish_csm_using_subcommand usage; and not __fish_seen_subcommand_from validate upload replay status export resolve agent help" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand usage; and not __fish_seen_subcommand_from validate upload replay status export resolve agent help" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand usage; and not __fish_seen_subcommand_from validate upload replay status export resolve agent help" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand usage; and not __fish_seen_subcommand_from validate upload replay status export resolve agent help" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand usage; and not __fish_seen_subcommand_from validate upload replay status export resolve agent help" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand usage; and not __fish_seen_subcommand_from validate upload replay status export resolve agent help" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand usage; and not __fish_seen_subcommand_from validate upload replay status export resolve agent help" -f -a "validate" -d 'Check a file against every local rule (nothing is journaled or sent)'
complete -c csm -n "__fish_csm_using_subcommand usage; and not __fish_seen_subcommand_from validate upload replay status export resolve agent help" -f -a "upload" -d 'Journal the records of a file, then send them in signed batches'
complete -c csm -n "__fish_csm_using_subcommand usage; and not __fish_seen_subcommand_from validate upload replay status export resolve agent help" -f -a "replay" -d 'Send again everything in the journal that is not accepted yet (same metering_sn)'
complete -c csm -n "__fish_csm_using_subcommand usage; and not __fish_seen_subcommand_from validate upload replay status export resolve agent help" -f -a "status" -d 'Counts by state, the oldest record waiting to be sent, deadlines, the last errors'
complete -c csm -n "__fish_csm_using_subcommand usage; and not __fish_seen_subcommand_from validate upload replay status export resolve agent help" -f -a "export" -d 'Write the records in one state to a file (CSV or JSONL) that upload reads back'
complete -c csm -n "__fish_csm_using_subcommand usage; and not __fish_seen_subcommand_from validate upload replay status export resolve agent help" -f -a "resolve" -d 'Give up on a record the marketplace does not hold, so that a corrected one can be uploaded for its period under a new metering_sn'
complete -c csm -n "__fish_csm_using_subcommand usage; and not __fish_seen_subcommand_from validate upload replay status export resolve agent help" -f -a "agent" -d 'Run the hourly metering agent: events in (spool directory, POST /events), one record per instance and closed hour out, sent like `upload`; /healthz and /metrics'
complete -c csm -n "__fish_csm_using_subcommand usage; and not __fish_seen_subcommand_from validate upload replay status export resolve agent help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from validate" -l format -d 'Input format; by default from the extension (.jsonl/.ndjson/.json are JSONL, else CSV)' -r -f -a "csv\t''
jsonl\t''"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from validate" -l encoding -d 'The file\'s text encoding: gb18030 (or gbk) for CSV saved by Chinese Excel' -r -f -a "utf-8\t''
gb18030\t'GB18030, a superset of GBK: one decoder reads both'"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from validate" -l billing -d 'How the product\'s pay-per-use item is billed (sets the reporting deadlines)' -r -f -a "hourly\t''
daily\t''"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from validate" -l journal -d 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from validate" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from validate" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from validate" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from validate" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from validate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from validate" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l format -d 'Input format; by default from the extension (.jsonl/.ndjson/.json are JSONL, else CSV)' -r -f -a "csv\t''
jsonl\t''"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l encoding -d 'The file\'s text encoding: gb18030 (or gbk) for CSV saved by Chinese Excel' -r -f -a "utf-8\t''
gb18030\t'GB18030, a superset of GBK: one decoder reads both'"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l billing -d 'How the product\'s pay-per-use item is billed (sets the reporting deadlines)' -r -f -a "hourly\t''
daily\t''"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l journal -d 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l key-file -d 'The seller key bound to the basic interfaces (signs the usage push)' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l endpoint -d 'Marketplace base URL (scheme, host, port); csm appends the API path. Else the profile\'s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l batch -d 'Records per request (100 to 1000)' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l retries -d 'Further attempts of a batch after a network error or 5xx (0 to 100)' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l backoff-ms -d 'First pause between attempts: 500ms, 2s; a bare number is milliseconds, 1ms to 30s (doubles, with jitter, up to 30 s)' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l timeout -d 'How long to wait for one answer: 30s, 2m; a bare number is seconds, 1s to 1h' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l ca-file -d 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l usage-value -d 'How usage_value is written in the body (decision 6: a JSON number)' -r -f -a "number\t''
string\t''"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l ak -d 'API Gateway access key id (with --apig)' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l sk-file -d 'API Gateway secret key file (with --apig)' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l lease -d 'PostgreSQL journal: how long a batch this process claims stays its own before another uploader may take it over and send it again under the same metering_sn (after a crash): 5m, 90s; a bare number is seconds, 1s to 24h. Must outlast one batch with all its retries' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -s y -l yes -d 'Send to the production marketplace without asking when no --endpoint or profile names the destination'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l apig -d 'Also sign each request for the API Gateway (AK/SK, SDK-HMAC-SHA256), on top of the body signature; needs --ak and --sk-file (or the profile\'s)'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l dry-run -d 'Check and count everything, journal nothing, send nothing'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from upload" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l journal -d 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l key-file -d 'The seller key bound to the basic interfaces (signs the usage push)' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l endpoint -d 'Marketplace base URL (scheme, host, port); csm appends the API path. Else the profile\'s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l batch -d 'Records per request (100 to 1000)' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l retries -d 'Further attempts of a batch after a network error or 5xx (0 to 100)' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l backoff-ms -d 'First pause between attempts: 500ms, 2s; a bare number is milliseconds, 1ms to 30s (doubles, with jitter, up to 30 s)' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l timeout -d 'How long to wait for one answer: 30s, 2m; a bare number is seconds, 1s to 1h' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l ca-file -d 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l usage-value -d 'How usage_value is written in the body (decision 6: a JSON number)' -r -f -a "number\t''
string\t''"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l ak -d 'API Gateway access key id (with --apig)' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l sk-file -d 'API Gateway secret key file (with --apig)' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l lease -d 'PostgreSQL journal: how long a batch this process claims stays its own before another uploader may take it over and send it again under the same metering_sn (after a crash): 5m, 90s; a bare number is seconds, 1s to 24h. Must outlast one batch with all its retries' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -s y -l yes -d 'Send to the production marketplace without asking when no --endpoint or profile names the destination'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l apig -d 'Also sign each request for the API Gateway (AK/SK, SDK-HMAC-SHA256), on top of the body signature; needs --ak and --sk-file (or the profile\'s)'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l skip-rejected -d 'Leave out records the marketplace rejected for good (resent unchanged, they are refused again; `usage export --state rejected` takes them out to fix)'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from replay" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from status" -l journal -d 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from status" -l billing -d 'How the product\'s pay-per-use item is billed (sets the reporting deadlines)' -r -f -a "hourly\t''
daily\t''"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from status" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from status" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from status" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from export" -l journal -d 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from export" -l state -d 'Which records: those in this state' -r -f -a "pending\t''
sent\t''
accepted\t''
rejected\t''
abandoned\t''"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from export" -l out -d 'Output file (.jsonl/.ndjson/.json for JSONL, else CSV); written whole or not at all' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from export" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from export" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from export" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from export" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from export" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from resolve" -l journal -d 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from resolve" -l reason -d 'Why (kept in the journal with who and when): e.g. what 话单管理 showed' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from resolve" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from resolve" -l abandon -d 'Abandon it: never send it again and free its period for a corrected record under a new metering_sn. Only after 卖家中心 > 交易管理 > 话单管理 shows that the marketplace does not hold it'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from resolve" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from resolve" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from resolve" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from resolve" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from resolve" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l spool -d 'Directory the seller\'s services drop event files into (.csv with a header, or .jsonl); each is taken in whole and moved to done/, or to failed/ with NAME.error. It must exist (the agent makes only done/ and failed/ in it)' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l listen -d 'Address of POST /events, /healthz and /metrics (not with --once: it has no listener). Another address than loopback needs a token' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l token-file -d 'File holding the bearer token POST /events must carry (else CSM_AGENT_TOKEN; else none, on loopback only). Not with --once' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l journal -d 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l state -d 'The agent\'s own state (events seen, hours) in this SQLite file, for a single agent. Default: <journal>.agent.sqlite; with a PostgreSQL journal, the journal\'s database, shared by every agent of that journal' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l key-file -d 'The seller key bound to the basic interfaces (signs the usage push)' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l endpoint -d 'Marketplace base URL (scheme, host, port); csm appends the API path. Else the profile\'s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l batch -d 'Records per request (100 to 1000)' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l retries -d 'Further attempts of a batch after a network error or 5xx (0 to 100)' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l backoff-ms -d 'First pause between attempts: 500ms, 2s; a bare number is milliseconds, 1ms to 30s (doubles, with jitter, up to 30 s)' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l timeout -d 'How long to wait for one answer: 30s, 2m; a bare number is seconds, 1s to 1h' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l ca-file -d 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l usage-value -d 'How usage_value is written in the body (decision 6: a JSON number)' -r -f -a "number\t''
string\t''"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l ak -d 'API Gateway access key id (with --apig)' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l sk-file -d 'API Gateway secret key file (with --apig)' -r -F
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l aggregate -d 'How an hour\'s events become its usage_value: their sum, or for a product that bills a level, the highest (max) or the latest (last)' -r -f -a "sum\t'The total of the hour\'s values (a count, a volume)'
max\t'The highest value (a level: peak seats, peak storage)'
last\t'The value of the event with the latest time (a level read at the end of the hour)'"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l grace -d 'How long after its end an hour stays open for events still on their way: 5m, 90s; a bare number is seconds, 0s to 2h. Above 15m records miss the 0-15 minute window' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l alarm-after -d 'Stall alarm: /healthz turns red when a closed hour is still unreported this long after its end (and stays red this long after an hour failed): 45m, 2h; a bare number is seconds, 1m to 24h' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l on-alarm -d 'Shell command run (sh -c) once each time the alarm goes on, and when hours fail; CSM_ALARM_REASON holds why (no other CSM_* variable is passed on: they may hold keys). When the agent stops, one still running gets 5 s, then it is stopped' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l every -d 'How often the agent takes in the spool, closes due hours and sends: 30s, 1m; a bare number is seconds, 1s to 1h. Not with --once' -r
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -s y -l yes -d 'Send to the production marketplace without asking when no --endpoint or profile names the destination'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l apig -d 'Also sign each request for the API Gateway (AK/SK, SDK-HMAC-SHA256), on top of the body signature; needs --ak and --sk-file (or the profile\'s)'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l heartbeat-zero -d 'Close the hours without events of every instance seen in the last 21 days as `zero` (nothing is sent: the marketplace takes usage_value > 0 only)'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l once -d 'One cycle, then exit: take in the spool, close every hour that is due, send (cron)'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from agent" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from help" -f -a "validate" -d 'Check a file against every local rule (nothing is journaled or sent)'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from help" -f -a "upload" -d 'Journal the records of a file, then send them in signed batches'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from help" -f -a "replay" -d 'Send again everything in the journal that is not accepted yet (same metering_sn)'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from help" -f -a "status" -d 'Counts by state, the oldest record waiting to be sent, deadlines, the last errors'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from help" -f -a "export" -d 'Write the records in one state to a file (CSV or JSONL) that upload reads back'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from help" -f -a "resolve" -d 'Give up on a record the marketplace does not hold, so that a corrected one can be uploaded for its period under a new metering_sn'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from help" -f -a "agent" -d 'Run the hourly metering agent: events in (spool directory, POST /events), one record per instance and closed hour out, sent like `upload`; /healthz and /metrics'
complete -c csm -n "__fish_csm_using_subcommand usage; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c csm -n "__fish_csm_using_subcommand init" -l endpoint -d 'The merchant\'s production address (https://…)' -r
complete -c csm -n "__fish_csm_using_subcommand init" -l protocol -d 'Callback protocol version: v1 or v2' -r
complete -c csm -n "__fish_csm_using_subcommand init" -l key-file -d 'File holding the basic-interface key' -r -F
complete -c csm -n "__fish_csm_using_subcommand init" -l kit-key-file -d 'File holding the Kit (joint-operation sync) key' -r -F
complete -c csm -n "__fish_csm_using_subcommand init" -l license-key-file -d 'File holding the License delivery key' -r -F
complete -c csm -n "__fish_csm_using_subcommand init" -l ak -d 'API Gateway access key id (AK) for the marketplace open APIs' -r
complete -c csm -n "__fish_csm_using_subcommand init" -l sk-file -d 'File holding the API Gateway secret key (SK)' -r -F
complete -c csm -n "__fish_csm_using_subcommand init" -l marketplace-endpoint -d 'Base URL of the marketplace open APIs (usage push, license activation)' -r
complete -c csm -n "__fish_csm_using_subcommand init" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand init" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand init" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand init" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand init" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand init" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand profile; and not __fish_seen_subcommand_from list show help" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand profile; and not __fish_seen_subcommand_from list show help" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand profile; and not __fish_seen_subcommand_from list show help" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand profile; and not __fish_seen_subcommand_from list show help" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand profile; and not __fish_seen_subcommand_from list show help" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand profile; and not __fish_seen_subcommand_from list show help" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand profile; and not __fish_seen_subcommand_from list show help" -f -a "list" -d 'The profiles in the config file; `*` marks the one in use'
complete -c csm -n "__fish_csm_using_subcommand profile; and not __fish_seen_subcommand_from list show help" -f -a "show" -d 'One profile\'s settings (key file paths, never key contents)'
complete -c csm -n "__fish_csm_using_subcommand profile; and not __fish_seen_subcommand_from list show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from list" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from list" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from show" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from show" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from show" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "list" -d 'The profiles in the config file; `*` marks the one in use'
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "show" -d 'One profile\'s settings (key file paths, never key contents)'
complete -c csm -n "__fish_csm_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c csm -n "__fish_csm_using_subcommand completions" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand completions" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand completions" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand completions" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand completions" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand completions" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand man" -l profile -d 'Profile from the config file (`csm init`) that supplies endpoint and key locations' -r -f -a "(csm profile list -q 2>/dev/null)"
complete -c csm -n "__fish_csm_using_subcommand man" -l json -d 'Print one JSON object (or JSON lines for streams) instead of text'
complete -c csm -n "__fish_csm_using_subcommand man" -s q -l quiet -d 'Print nothing on stdout but the result itself'
complete -c csm -n "__fish_csm_using_subcommand man" -l no-input -d 'Never prompt; fail with a message naming the flag to pass instead'
complete -c csm -n "__fish_csm_using_subcommand man" -s h -l help -d 'Print help'
complete -c csm -n "__fish_csm_using_subcommand man" -s V -l version -d 'Print version'
complete -c csm -n "__fish_csm_using_subcommand help; and not __fish_seen_subcommand_from sign verify crypto send test-endpoint load serve license usage init profile completions man help" -f -a "sign" -d 'Compute a signature offline (every KooGallery scheme)'
complete -c csm -n "__fish_csm_using_subcommand help; and not __fish_seen_subcommand_from sign verify crypto send test-endpoint load serve license usage init profile completions man help" -f -a "verify" -d 'Check a signature; on a mismatch, show what was signed and find the usual mistake'
complete -c csm -n "__fish_csm_using_subcommand help; and not __fish_seen_subcommand_from sign verify crypto send test-endpoint load serve license usage init profile completions man help" -f -a "crypto" -d 'V1 credential encryption (derive the AES key, encrypt, decrypt); a 联营 app\'s RSA pair'
complete -c csm -n "__fish_csm_using_subcommand help; and not __fish_seen_subcommand_from sign verify crypto send test-endpoint load serve license usage init profile completions man help" -f -a "send" -d 'Send one signed callback to an endpoint and judge the reply'
complete -c csm -n "__fish_csm_using_subcommand help; and not __fish_seen_subcommand_from sign verify crypto send test-endpoint load serve license usage init profile completions man help" -f -a "test-endpoint" -d 'Play the marketplace against an endpoint: lifecycle, idempotency, negative, dial, readiness'
complete -c csm -n "__fish_csm_using_subcommand help; and not __fish_seen_subcommand_from sign verify crypto send test-endpoint load serve license usage init profile completions man help" -f -a "load" -d 'Signed callbacks at a fixed arrival rate: honest latency percentiles, a CI gate'
complete -c csm -n "__fish_csm_using_subcommand help; and not __fish_seen_subcommand_from sign verify crypto send test-endpoint load serve license usage init profile completions man help" -f -a "serve" -d 'Run a reference merchant endpoint or a stand-in marketplace on this machine'
complete -c csm -n "__fish_csm_using_subcommand help; and not __fish_seen_subcommand_from sign verify crypto send test-endpoint load serve license usage init profile completions man help" -f -a "license" -d 'License codes: keys, generation, inspection, validation, activation'
complete -c csm -n "__fish_csm_using_subcommand help; and not __fish_seen_subcommand_from sign verify crypto send test-endpoint load serve license usage init profile completions man help" -f -a "usage" -d 'Usage records (话单): validate, upload, replay, status, export, resolve'
complete -c csm -n "__fish_csm_using_subcommand help; and not __fish_seen_subcommand_from sign verify crypto send test-endpoint load serve license usage init profile completions man help" -f -a "init" -d 'Interactive setup of a profile (endpoint, protocol, key locations)'
complete -c csm -n "__fish_csm_using_subcommand help; and not __fish_seen_subcommand_from sign verify crypto send test-endpoint load serve license usage init profile completions man help" -f -a "profile" -d 'The profiles `csm init` wrote: list them, show one (key file paths, never keys)'
complete -c csm -n "__fish_csm_using_subcommand help; and not __fish_seen_subcommand_from sign verify crypto send test-endpoint load serve license usage init profile completions man help" -f -a "completions" -d 'Print a shell completion script'
complete -c csm -n "__fish_csm_using_subcommand help; and not __fish_seen_subcommand_from sign verify crypto send test-endpoint load serve license usage init profile completions man help" -f -a "man" -d 'Write the manual pages into a directory (e.g. ~/.local/share/man/man1)'
complete -c csm -n "__fish_csm_using_subcommand help; and not __fish_seen_subcommand_from sign verify crypto send test-endpoint load serve license usage init profile completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from crypto" -f -a "derive-key" -d 'Print the AES key derived from the access key (hex)'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from crypto" -f -a "encrypt" -d 'Encrypt VALUE: prints the 16-character IV followed by Base64'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from crypto" -f -a "decrypt" -d 'Decrypt VALUE (IV prefix + Base64): prints the plaintext'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from crypto" -f -a "rsa-keygen" -d 'Make the 3072-bit RSA pair of a joint-operation (联营) app: register FILE.pub (SPKI PEM) with the marketplace, give FILE (PKCS#8 PEM) to `csm serve merchant --app-private-key` or your app, which decrypts applicationSync\'s clientSecret with it'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from serve" -f -a "merchant" -d 'A reference merchant endpoint: verifies every callback and answers as KooGallery documents it'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from serve" -f -a "marketplace" -d 'A stand-in marketplace: usage push and license open APIs, and License callbacks'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from license" -f -a "keygen" -d 'Make an Ed25519 key pair: the private key to FILE (0600), the public key to FILE.pub, and a separate short-code secret to FILE.short (0600)'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from license" -f -a "gen" -d 'Issue signed licenses (codes, short codes or files), or marketplace-shaped PL codes'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from license" -f -a "inspect" -d 'Decode a code or license file and show every field (the signature only if keys are given)'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from license" -f -a "validate" -d 'Judge a code or license file: valid, valid-in-grace, expired, bad-signature, ...'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from license" -f -a "activate" -d 'Activate a marketplace license code (open API, AK/SK-signed)'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from license" -f -a "heartbeat" -d 'Query a marketplace license code\'s status (heartbeat open API, AK/SK-signed); exit 0 only if ALIVE'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from usage" -f -a "validate" -d 'Check a file against every local rule (nothing is journaled or sent)'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from usage" -f -a "upload" -d 'Journal the records of a file, then send them in signed batches'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from usage" -f -a "replay" -d 'Send again everything in the journal that is not accepted yet (same metering_sn)'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from usage" -f -a "status" -d 'Counts by state, the oldest record waiting to be sent, deadlines, the last errors'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from usage" -f -a "export" -d 'Write the records in one state to a file (CSV or JSONL) that upload reads back'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from usage" -f -a "resolve" -d 'Give up on a record the marketplace does not hold, so that a corrected one can be uploaded for its period under a new metering_sn'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from usage" -f -a "agent" -d 'Run the hourly metering agent: events in (spool directory, POST /events), one record per instance and closed hour out, sent like `upload`; /healthz and /metrics'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "list" -d 'The profiles in the config file; `*` marks the one in use'
complete -c csm -n "__fish_csm_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "show" -d 'One profile\'s settings (key file paths, never key contents)'
