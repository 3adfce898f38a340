
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'csm' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'csm'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'csm' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('sign', 'sign', [CompletionResultType]::ParameterValue, 'Compute a signature offline (every KooGallery scheme)')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check a signature; on a mismatch, show what was signed and find the usual mistake')
            [CompletionResult]::new('crypto', 'crypto', [CompletionResultType]::ParameterValue, 'V1 credential encryption (derive the AES key, encrypt, decrypt); a 联营 app''s RSA pair')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send one signed callback to an endpoint and judge the reply')
            [CompletionResult]::new('test-endpoint', 'test-endpoint', [CompletionResultType]::ParameterValue, 'Play the marketplace against an endpoint: lifecycle, idempotency, negative, dial, readiness')
            [CompletionResult]::new('load', 'load', [CompletionResultType]::ParameterValue, 'Signed callbacks at a fixed arrival rate: honest latency percentiles, a CI gate')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run a reference merchant endpoint or a stand-in marketplace on this machine')
            [CompletionResult]::new('license', 'license', [CompletionResultType]::ParameterValue, 'License codes: keys, generation, inspection, validation, activation')
            [CompletionResult]::new('usage', 'usage', [CompletionResultType]::ParameterValue, 'Usage records (话单): validate, upload, replay, status, export, resolve')
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Interactive setup of a profile (endpoint, protocol, key locations)')
            [CompletionResult]::new('profile', 'profile', [CompletionResultType]::ParameterValue, 'The profiles `csm init` wrote: list them, show one (key file paths, never keys)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Write the manual pages into a directory (e.g. ~/.local/share/man/man1)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'csm;sign' {
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'File holding the key (its content without a trailing newline); `-` reads standard input')
            [CompletionResult]::new('--timestamp', '--timestamp', [CompletionResultType]::ParameterName, 'Timestamp: epoch ms (V2, Kit, License, usage) or yyyyMMddHHmmssSSS (V1); generated when absent')
            [CompletionResult]::new('--nonce', '--nonce', [CompletionResultType]::ParameterName, 'Nonce (V2, Kit, License, usage); 64 random hex characters when absent')
            [CompletionResult]::new('--param', '--param', [CompletionResultType]::ParameterName, 'A query parameter for saas-v1, decoded (repeatable)')
            [CompletionResult]::new('--body-file', '--body-file', [CompletionResultType]::ParameterName, 'The body, exact bytes; `-` reads standard input')
            [CompletionResult]::new('--body', '--body', [CompletionResultType]::ParameterName, 'The body, exact bytes; `-` reads standard input')
            [CompletionResult]::new('--ak', '--ak', [CompletionResultType]::ParameterName, 'apig: the access key id (AK)')
            [CompletionResult]::new('--sk-file', '--sk-file', [CompletionResultType]::ParameterName, 'apig: file holding the secret key (SK); also CSM_SK')
            [CompletionResult]::new('--date', '--date', [CompletionResultType]::ParameterName, 'apig: the X-Sdk-Date value (YYYYMMDDTHHMMSSZ); now when absent')
            [CompletionResult]::new('--method', '--method', [CompletionResultType]::ParameterName, 'apig: the HTTP method')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The request URL (apig: signed; saas-v1: the parameters in its query are signed too; sign --curl: where the request goes)')
            [CompletionResult]::new('--header', '--header', [CompletionResultType]::ParameterName, 'apig: a header to sign, ''Name: value'' (repeatable; X-Sdk-Date is always signed)')
            [CompletionResult]::new('--license-inner', '--license-inner', [CompletionResultType]::ParameterName, 'license: the inner step (spec decision 5)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--uppercase', '--uppercase', [CompletionResultType]::ParameterName, 'Print a hex signature in upper case with -q and in --json''s `signature` (the query and header lines always carry it so, as the marketplace sends it)')
            [CompletionResult]::new('--curl', '--curl', [CompletionResultType]::ParameterName, 'Print the whole signed request as a curl command. The address is --url, else the profile''s endpoint (saas-v1, saas-v2, license) or marketplace endpoint (usage)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;verify' {
            [CompletionResult]::new('--index', '--index', [CompletionResultType]::ParameterName, '`request` with a `--record` file of several requests: which one (1 = the first)')
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'File holding the key (its content without a trailing newline); `-` reads standard input')
            [CompletionResult]::new('--param', '--param', [CompletionResultType]::ParameterName, 'A query parameter for saas-v1, decoded (repeatable)')
            [CompletionResult]::new('--body-file', '--body-file', [CompletionResultType]::ParameterName, 'The body, exact bytes; `-` reads standard input')
            [CompletionResult]::new('--body', '--body', [CompletionResultType]::ParameterName, 'The body, exact bytes; `-` reads standard input')
            [CompletionResult]::new('--ak', '--ak', [CompletionResultType]::ParameterName, 'apig: the access key id (AK)')
            [CompletionResult]::new('--sk-file', '--sk-file', [CompletionResultType]::ParameterName, 'apig: file holding the secret key (SK); also CSM_SK')
            [CompletionResult]::new('--method', '--method', [CompletionResultType]::ParameterName, 'apig: the HTTP method')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The request URL (apig: signed; saas-v1: the parameters in its query are signed too; sign --curl: where the request goes)')
            [CompletionResult]::new('--header', '--header', [CompletionResultType]::ParameterName, 'apig: a header to sign, ''Name: value'' (repeatable; X-Sdk-Date is always signed)')
            [CompletionResult]::new('--license-inner', '--license-inner', [CompletionResultType]::ParameterName, 'license: the inner step (spec decision 5)')
            [CompletionResult]::new('--signature', '--signature', [CompletionResultType]::ParameterName, 'The received signature (authToken, x-sign, Body-Sign header or value, Authorization header), as a log shows it: quotes, the header''s name and URL encoding are undone. saas-v1 also takes it from the authToken in --url''s query')
            [CompletionResult]::new('--scheme', '--scheme', [CompletionResultType]::ParameterName, '`response`: the scheme of the call the reply answers; its key checks the Body-Sign, which V1 replies must carry and V2 replies may. Default: the profile''s protocol (v2: saas-v2), else saas-v1')
            [CompletionResult]::new('--kit-key-file', '--kit-key-file', [CompletionResultType]::ParameterName, 'The Kit key, to check Kit captures and to spot a Kit key used for basic calls')
            [CompletionResult]::new('--license-key-file', '--license-key-file', [CompletionResultType]::ParameterName, 'The License delivery key, for License 2.0 captures')
            [CompletionResult]::new('--window', '--window', [CompletionResultType]::ParameterName, 'Replay window for V2 timestamps (spec decision 3): 60s, 5m; a bare number is seconds (1s to 24h)')
            [CompletionResult]::new('--timestamp', '--timestamp', [CompletionResultType]::ParameterName, 'The timestamp that was sent: epoch ms (V2, Kit, License, usage; required) or yyyyMMddHHmmssSSS (V1, its timeStamp parameter)')
            [CompletionResult]::new('--nonce', '--nonce', [CompletionResultType]::ParameterName, 'The nonce that was sent (V2, Kit, License, usage; required)')
            [CompletionResult]::new('--date', '--date', [CompletionResultType]::ParameterName, 'apig: the X-Sdk-Date that was sent (YYYYMMDDTHHMMSSZ; required)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;crypto' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('derive-key', 'derive-key', [CompletionResultType]::ParameterValue, 'Print the AES key derived from the access key (hex)')
            [CompletionResult]::new('encrypt', 'encrypt', [CompletionResultType]::ParameterValue, 'Encrypt VALUE: prints the 16-character IV followed by Base64')
            [CompletionResult]::new('decrypt', 'decrypt', [CompletionResultType]::ParameterValue, 'Decrypt VALUE (IV prefix + Base64): prints the plaintext')
            [CompletionResult]::new('rsa-keygen', 'rsa-keygen', [CompletionResultType]::ParameterValue, 'Make the 3072-bit RSA pair of a joint-operation (联营) app: register FILE.pub (SPKI PEM) with the marketplace, give FILE (PKCS#8 PEM) to `csm serve merchant --app-private-key` or your app, which decrypts applicationSync''s clientSecret with it')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'csm;crypto;derive-key' {
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'File holding the access key (its content without a trailing newline); also CSM_ACCESS_KEY')
            [CompletionResult]::new('--encrypt-type', '--encrypt-type', [CompletionResultType]::ParameterName, '1 = AES-256 (the default when a response omits encryptType), 2 = AES-128')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;crypto;encrypt' {
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'File holding the access key (its content without a trailing newline); also CSM_ACCESS_KEY')
            [CompletionResult]::new('--encrypt-type', '--encrypt-type', [CompletionResultType]::ParameterName, '1 = AES-256 (the default when a response omits encryptType), 2 = AES-128')
            [CompletionResult]::new('--iv', '--iv', [CompletionResultType]::ParameterName, 'The IV string (16 ASCII characters); random alphanumerics when absent')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;crypto;decrypt' {
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'File holding the access key (its content without a trailing newline); also CSM_ACCESS_KEY')
            [CompletionResult]::new('--encrypt-type', '--encrypt-type', [CompletionResultType]::ParameterName, '1 = AES-256 (the default when a response omits encryptType), 2 = AES-128')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;crypto;rsa-keygen' {
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Private key file to write (PKCS#8 PEM, 0600); the public key goes to FILE.pub')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Replace existing key files')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;crypto;help' {
            [CompletionResult]::new('derive-key', 'derive-key', [CompletionResultType]::ParameterValue, 'Print the AES key derived from the access key (hex)')
            [CompletionResult]::new('encrypt', 'encrypt', [CompletionResultType]::ParameterValue, 'Encrypt VALUE: prints the 16-character IV followed by Base64')
            [CompletionResult]::new('decrypt', 'decrypt', [CompletionResultType]::ParameterValue, 'Decrypt VALUE (IV prefix + Base64): prints the plaintext')
            [CompletionResult]::new('rsa-keygen', 'rsa-keygen', [CompletionResultType]::ParameterValue, 'Make the 3072-bit RSA pair of a joint-operation (联营) app: register FILE.pub (SPKI PEM) with the marketplace, give FILE (PKCS#8 PEM) to `csm serve merchant --app-private-key` or your app, which decrypts applicationSync''s clientSecret with it')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'csm;crypto;help;derive-key' {
            break
        }
        'csm;crypto;help;encrypt' {
            break
        }
        'csm;crypto;help;decrypt' {
            break
        }
        'csm;crypto;help;rsa-keygen' {
            break
        }
        'csm;crypto;help;help' {
            break
        }
        'csm;send' {
            [CompletionResult]::new('--scene', '--scene', [CompletionResultType]::ParameterName, 'Scene or status for activities that have one (RENEWAL, FREEZE, ...)')
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'The production address, e.g. https://isv.example.com/produce')
            [CompletionResult]::new('--protocol', '--protocol', [CompletionResultType]::ParameterName, 'Callback protocol version (default: the profile''s, else v2)')
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'File holding the key bound to the basic interfaces (also CSM_ACCESS_KEY). orderNotify is signed with this key too: pass the general (通用) interface key for it')
            [CompletionResult]::new('--kit-key-file', '--kit-key-file', [CompletionResultType]::ParameterName, 'File holding the Kit (joint-operation sync) key (also CSM_KIT_KEY)')
            [CompletionResult]::new('--license-key-file', '--license-key-file', [CompletionResultType]::ParameterName, 'File holding the License delivery key (also CSM_LICENSE_KEY)')
            [CompletionResult]::new('--app-public-key', '--app-public-key', [CompletionResultType]::ParameterName, 'The RSA public key (PEM: SPKI or PKCS#1, at least 3072 bits) registered for your joint-operation app: applicationSync then carries a real RSA-OAEP ciphertext (Base64) of a fresh clientSecret. Without it, random bytes of a ciphertext''s size stand in, which no private key decrypts. `csm crypto rsa-keygen` makes a pair')
            [CompletionResult]::new('--oaep', '--oaep', [CompletionResultType]::ParameterName, 'OAEP parameters for --app-public-key (the docs do not name them)')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Override a field: `--set instanceId=abc`, nested `--set a.b=c`; JSON for integer, array and object fields. Repeatable')
            [CompletionResult]::new('--unset', '--unset', [CompletionResultType]::ParameterName, 'Leave a field out. Repeatable')
            [CompletionResult]::new('--body-file', '--body-file', [CompletionResultType]::ParameterName, 'Start from this JSON object instead of generated values; its bytes are sent (and signed) exactly as they are')
            [CompletionResult]::new('--body', '--body', [CompletionResultType]::ParameterName, 'Start from this JSON object instead of generated values; its bytes are sent (and signed) exactly as they are')
            [CompletionResult]::new('--expect-code', '--expect-code', [CompletionResultType]::ParameterName, 'The resultCode the reply should carry')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Time budget, e.g. 5s or 1500ms')
            [CompletionResult]::new('--users', '--users', [CompletionResultType]::ParameterName, 'Users generated for authSync (at most 500 per call)')
            [CompletionResult]::new('--license-inner', '--license-inner', [CompletionResultType]::ParameterName, 'Inner step of the License 2.0 signature (decision 5)')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Also trust this root certificate (PEM), e.g. a staging endpoint behind a private CA')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--allow-unknown', '--allow-unknown', [CompletionResultType]::ParameterName, 'Accept fields and values the catalog does not list')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print the request without sending it')
            [CompletionResult]::new('--curl', '--curl', [CompletionResultType]::ParameterName, 'Print an equivalent curl command')
            [CompletionResult]::new('--debug-page', '--debug-page', [CompletionResultType]::ParameterName, 'Use the debugging page''s 20 s budget')
            [CompletionResult]::new('--kit-path-full', '--kit-path-full', [CompletionResultType]::ParameterName, 'Append Kit paths to the full address instead of its origin')
            [CompletionResult]::new('--no-test-flag', '--no-test-flag', [CompletionResultType]::ParameterName, 'Send without testFlag (as a live call). Only for endpoints you own. Also needed to send a testFlag other than 1 from --set, --unset or --body-file')
            [CompletionResult]::new('--require-body-sign', '--require-body-sign', [CompletionResultType]::ParameterName, 'Require a valid Body-Sign on V2 replies too (V1 always requires it)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask before sending to a non-loopback address')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask before sending to a non-loopback address')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;test-endpoint' {
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'The production address under test, e.g. https://isv.example.com/produce')
            [CompletionResult]::new('--protocol', '--protocol', [CompletionResultType]::ParameterName, 'Protocol of the basic interfaces (default: the profile''s, else v2; with --demo: both, or the one named)')
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'File holding the key bound to the basic interfaces (also CSM_ACCESS_KEY). orderNotify is signed with this key too: pass the general (通用) interface key for it')
            [CompletionResult]::new('--kit-key-file', '--kit-key-file', [CompletionResultType]::ParameterName, 'File holding the Kit (joint-operation sync) key (also CSM_KIT_KEY)')
            [CompletionResult]::new('--license-key-file', '--license-key-file', [CompletionResultType]::ParameterName, 'File holding the License delivery key (also CSM_LICENSE_KEY)')
            [CompletionResult]::new('--app-public-key', '--app-public-key', [CompletionResultType]::ParameterName, 'The RSA public key (PEM: SPKI or PKCS#1, at least 3072 bits) registered for your joint-operation app: applicationSync then carries a real RSA-OAEP ciphertext (Base64) of a fresh clientSecret. Without it, random bytes of a ciphertext''s size stand in, which no private key decrypts. `csm crypto rsa-keygen` makes a pair')
            [CompletionResult]::new('--oaep', '--oaep', [CompletionResultType]::ParameterName, 'OAEP parameters for --app-public-key (the docs do not name them)')
            [CompletionResult]::new('--suite', '--suite', [CompletionResultType]::ParameterName, 'Suites to run (repeatable or comma-separated; default all but sso, which runs when named or with --demo)')
            [CompletionResult]::new('--show', '--show', [CompletionResultType]::ParameterName, 'Which rows the table shows: failures (failures and skips in full, passes folded per suite, a recap last) or all. Default: failures on a terminal, all otherwise')
            [CompletionResult]::new('--junit', '--junit', [CompletionResultType]::ParameterName, 'Write a JUnit XML report to FILE (for CI)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Time budget per call, e.g. 5s or 1500ms (production: 5 s)')
            [CompletionResult]::new('--license-code', '--license-code', [CompletionResultType]::ParameterName, 'A license code your endpoint knows, carried by the License callbacks instead of made-up ones (needed with --no-test-flag, else the License callbacks are skipped). The run releases it: give one made for testing')
            [CompletionResult]::new('--users', '--users', [CompletionResultType]::ParameterName, 'Users per authSync call (at most 500)')
            [CompletionResult]::new('--license-inner', '--license-inner', [CompletionResultType]::ParameterName, 'Inner step of the License 2.0 signature (decision 5)')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Also trust this root certificate (PEM), e.g. a staging endpoint behind a private CA')
            [CompletionResult]::new('--login-url', '--login-url', [CompletionResultType]::ParameterName, 'The sso suite: your redirect URI, where the login portal sends the browser with ?code=…&tenant=… (with --demo: the reference merchant''s /sso/callback)')
            [CompletionResult]::new('--logout-url', '--logout-url', [CompletionResultType]::ParameterName, 'The sso suite: your logout address, expected to 302 to the IdP''s logout (with --demo: the reference merchant''s /sso/logout)')
            [CompletionResult]::new('--idp-listen', '--idp-listen', [CompletionResultType]::ParameterName, 'The sso suite: where the stand-in identity provider listens (port 0 picks a free port)')
            [CompletionResult]::new('--idp-url', '--idp-url', [CompletionResultType]::ParameterName, 'The sso suite: how your app reaches the stand-in identity provider, sent as tenantSync''s domainName (default: its own http://ADDR; a remote endpoint needs an address it can reach, e.g. a tunnel to --idp-listen)')
            [CompletionResult]::new('--fault', '--fault', [CompletionResultType]::ParameterName, 'With --demo: make the reference merchant wrong on purpose (see `csm serve merchant --help`)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--debug-page', '--debug-page', [CompletionResultType]::ParameterName, 'Use the debugging page''s 20 s budget instead of the production 5 s (decision 8)')
            [CompletionResult]::new('--kit-path-full', '--kit-path-full', [CompletionResultType]::ParameterName, 'Append Kit paths to the full address instead of its origin (decision 7)')
            [CompletionResult]::new('--no-test-flag', '--no-test-flag', [CompletionResultType]::ParameterName, 'Send calls without testFlag (as live orders). Only for endpoints you own')
            [CompletionResult]::new('--require-body-sign', '--require-body-sign', [CompletionResultType]::ParameterName, 'Require a valid Body-Sign on V2 replies too (V1 always requires it; decision 4)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask before calling a non-loopback address')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask before calling a non-loopback address')
            [CompletionResult]::new('--demo', '--demo', [CompletionResultType]::ParameterName, 'Start the reference merchant on a free loopback port and test it (v2 with Kit and License, then v1 with Kit), with keys made for the run')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;load' {
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'The address under load, e.g. https://isv.example.com/produce')
            [CompletionResult]::new('--protocol', '--protocol', [CompletionResultType]::ParameterName, 'Protocol of the basic interfaces (default: the profile''s, else v2)')
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'File holding the key bound to the basic interfaces (also CSM_ACCESS_KEY). orderNotify is signed with this key too: pass the general (通用) interface key for it')
            [CompletionResult]::new('--kit-key-file', '--kit-key-file', [CompletionResultType]::ParameterName, 'File holding the Kit (joint-operation sync) key (also CSM_KIT_KEY)')
            [CompletionResult]::new('--license-key-file', '--license-key-file', [CompletionResultType]::ParameterName, 'File holding the License delivery key (also CSM_LICENSE_KEY)')
            [CompletionResult]::new('--rate', '--rate', [CompletionResultType]::ParameterName, 'Requests per second, started on schedule whether or not earlier ones answered (open loop); `max` keeps every connection busy instead (closed loop, to find the ceiling)')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'How long to send, e.g. 30s or 10m (1 ms to 24 h)')
            [CompletionResult]::new('--requests', '--requests', [CompletionResultType]::ParameterName, 'How many requests to send (1 to 100,000,000); with --duration, whichever ends first')
            [CompletionResult]::new('--connections', '--connections', [CompletionResultType]::ParameterName, 'Requests in flight at most (connections kept open to the endpoint)')
            [CompletionResult]::new('--ramp', '--ramp', [CompletionResultType]::ParameterName, 'Rise linearly from 0 to --rate over this time first (counted in --duration)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Time budget per request, e.g. 5s or 1500ms (the marketplace waits 5 s); also how long a request may wait for a free connection')
            [CompletionResult]::new('--activity', '--activity', [CompletionResultType]::ParameterName, 'What to send: NAME[:WEIGHT],… from the catalog (default: the dial-test mix of the keys given); `NAME SCENE` picks a scene as the report names it, e.g. ''updateInstanceStatus FREEZE:3''. Calls on an instance use ids the endpoint created')
            [CompletionResult]::new('--scenario', '--scenario', [CompletionResultType]::ParameterName, 'Run whole orders instead: each virtual order sends newInstance, queryInstance, refreshInstance, updateInstanceStatus and releaseInstance (V1: new, refresh, expire, release) in order on its own instance, the next step once the previous one succeeded')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Override a field in every request of the activities that have it: `--set productId=P1`, nested `--set a.b=c` (checked as in `csm send`). Repeatable')
            [CompletionResult]::new('--body-file', '--body-file', [CompletionResultType]::ParameterName, 'Lay this JSON object''s fields over every request of the activities that have them (the other fields, ids included, are still generated afresh)')
            [CompletionResult]::new('--body', '--body', [CompletionResultType]::ParameterName, 'Lay this JSON object''s fields over every request of the activities that have them (the other fields, ids included, are still generated afresh)')
            [CompletionResult]::new('--threshold', '--threshold', [CompletionResultType]::ParameterName, 'Pass/fail gate (repeatable): p50|p90|p99|p999|max<DURATION, errors<PERCENT, rate>=FRACTION')
            [CompletionResult]::new('--hdr-out', '--hdr-out', [CompletionResultType]::ParameterName, 'Write the corrected latency as an HdrHistogram interval log (one histogram per second, microseconds) to FILE, for HdrHistogram''s plotting tools')
            [CompletionResult]::new('--license-inner', '--license-inner', [CompletionResultType]::ParameterName, 'Inner step of the License 2.0 signature (decision 5)')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Also trust this root certificate (PEM), e.g. a staging endpoint behind a private CA')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--allow-unknown', '--allow-unknown', [CompletionResultType]::ParameterName, 'Accept `--set` / `--body-file` fields and values the catalog does not list (they go to every activity)')
            [CompletionResult]::new('--kit-path-full', '--kit-path-full', [CompletionResultType]::ParameterName, 'Append Kit paths to the full address instead of its origin (decision 7)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask before loading a non-loopback address')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask before loading a non-loopback address')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;serve' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('merchant', 'merchant', [CompletionResultType]::ParameterValue, 'A reference merchant endpoint: verifies every callback and answers as KooGallery documents it')
            [CompletionResult]::new('marketplace', 'marketplace', [CompletionResultType]::ParameterValue, 'A stand-in marketplace: usage push and license open APIs, and License callbacks')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'csm;serve;merchant' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Address to listen on; port 0 picks a free port (printed on the first line)')
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'File holding the key bound to the basic interfaces (also CSM_ACCESS_KEY). orderNotify is signed with this key too: pass the general (通用) interface key for it')
            [CompletionResult]::new('--kit-key-file', '--kit-key-file', [CompletionResultType]::ParameterName, 'File holding the Kit (joint-operation sync) key (also CSM_KIT_KEY)')
            [CompletionResult]::new('--license-key-file', '--license-key-file', [CompletionResultType]::ParameterName, 'File holding the License delivery key (also CSM_LICENSE_KEY)')
            [CompletionResult]::new('--app-private-key', '--app-private-key', [CompletionResultType]::ParameterName, 'The joint-operation app''s RSA private key (PKCS#8 PEM, at least 3072 bits): each applicationSync''s clientSecret is decrypted with it, trying the OAEP readings sha256-mgf1sha1, sha256 and sha1 (the one that matched is logged), and refused with 000101 when none does. The login at /sso/callback needs it')
            [CompletionResult]::new('--idp-timeout', '--idp-timeout', [CompletionResultType]::ParameterName, 'How long a login at /sso/callback waits for the identity provider (token, userinfo)')
            [CompletionResult]::new('--protocol', '--protocol', [CompletionResultType]::ParameterName, 'Which basic protocol to answer: v2 (POST JSON) or v1 (GET with authToken)')
            [CompletionResult]::new('--fault', '--fault', [CompletionResultType]::ParameterName, 'Be wrong on purpose (repeatable): bad-body-sign, body-sign-case (header names in lower case), wrong-code, slow, not-idempotent, accept-bad-signatures, drop-fields, wrong-encryption, stall (stops answering for 2 s, 1 s after the first request); login: sso-secret-encrypted (sends clientSecret still encrypted), sso-code-reuse (a replayed code logs in without the identity provider), sso-skip-userinfo (logs in without asking userinfo)')
            [CompletionResult]::new('--fault-delay', '--fault-delay', [CompletionResultType]::ParameterName, 'How long the `slow` fault waits before answering (beyond the 5 s budget by default)')
            [CompletionResult]::new('--window', '--window', [CompletionResultType]::ParameterName, 'Replay window for V2 timestamps: 60s, 5m; a bare number is seconds (1s to 24h)')
            [CompletionResult]::new('--state', '--state', [CompletionResultType]::ParameterName, 'SQLite file for instances, license codes and Kit records. Without it they live in memory, bounded for long load runs: the 100,000 of each written last are kept; nonces are remembered for the replay window (--window) only, so their number is bounded by the requests of one window')
            [CompletionResult]::new('--record', '--record', [CompletionResultType]::ParameterName, 'Append every received request, raw, to FILE as JSON lines (for auditing signatures; cookies, Authorization and the login pages'' codes are recorded as <redacted>)')
            [CompletionResult]::new('--license-inner', '--license-inner', [CompletionResultType]::ParameterName, 'Inner step expected in License 2.0 signatures (decision 5)')
            [CompletionResult]::new('--client-timeout', '--client-timeout', [CompletionResultType]::ParameterName, 'Drop a connection whose client sends no complete request head for this long (also between requests on a kept-alive connection), or takes longer than this again to send the body (answered 408): 30s, 1500ms, 2m')
            [CompletionResult]::new('--max-body', '--max-body', [CompletionResultType]::ParameterName, 'Refuse request bodies larger than this with 413 (bytes, or with a KiB/MiB suffix)')
            [CompletionResult]::new('--keep-alive-max', '--keep-alive-max', [CompletionResultType]::ParameterName, 'Requests one kept-alive connection may carry; the last is answered with `Connection: close`')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Requests handled at once (threads; connections themselves cost none)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;serve;marketplace' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Address to listen on, loopback only (the admin API has no authentication); port 0 picks a free port (printed on start)')
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'The seller key bound to the basic interfaces: verifies usage push signatures')
            [CompletionResult]::new('--ak', '--ak', [CompletionResultType]::ParameterName, 'API Gateway access key id accepted by the license open APIs (needs --sk-file; with --sk-file alone, any id is taken)')
            [CompletionResult]::new('--sk-file', '--sk-file', [CompletionResultType]::ParameterName, 'API Gateway secret key accepted by the license open APIs')
            [CompletionResult]::new('--license-key-file', '--license-key-file', [CompletionResultType]::ParameterName, 'The key bound to the License delivery interface: signs License callbacks to the merchant')
            [CompletionResult]::new('--merchant-endpoint', '--merchant-endpoint', [CompletionResultType]::ParameterName, 'The merchant''s production address, for License callbacks (sent with testFlag "1" unless an admin request asks for "0"; a non-loopback address needs --yes or a confirmation)')
            [CompletionResult]::new('--state', '--state', [CompletionResultType]::ParameterName, 'SQLite state file (accepted usage in table usage_records); in memory when absent')
            [CompletionResult]::new('--fault', '--fault', [CompletionResultType]::ParameterName, 'Misbehave on purpose (repeatable): 5xx[=N], slow[=MS], drop-after-store[=N], partial-rejects[=N], batch-limit[=N], license-internal-error. 5xx and drop-after-store act on the first attempt of every N-th usage batch (a retry gets through; N=1: every request)')
            [CompletionResult]::new('--idp-code-ttl', '--idp-code-ttl', [CompletionResultType]::ParameterName, 'How long a single sign-on authorization code stays valid (not published; OAuth 2.0 recommends at most 10 minutes), e.g. 300s or 2m')
            [CompletionResult]::new('--idp-access-ttl', '--idp-access-ttl', [CompletionResultType]::ParameterName, 'Lifetime of the identity provider''s access tokens (documented: 7200 s)')
            [CompletionResult]::new('--idp-refresh-ttl', '--idp-refresh-ttl', [CompletionResultType]::ParameterName, 'Lifetime of its refresh tokens (documented: 30 days)')
            [CompletionResult]::new('--client-timeout', '--client-timeout', [CompletionResultType]::ParameterName, 'Drop a connection whose client sends no complete request head for this long (also between requests on a kept-alive connection), or takes longer than this again to send the body (answered 408): 30s, 1500ms, 2m')
            [CompletionResult]::new('--max-body', '--max-body', [CompletionResultType]::ParameterName, 'Refuse request bodies larger than this with 413 (bytes, or with a KiB/MiB suffix)')
            [CompletionResult]::new('--keep-alive-max', '--keep-alive-max', [CompletionResultType]::ParameterName, 'Requests one kept-alive connection may carry; the last is answered with `Connection: close`')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Requests handled at once (threads; connections themselves cost none)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--license-plain-sha256', '--license-plain-sha256', [CompletionResultType]::ParameterName, 'Sign License callbacks with the plain SHA-256 inner step instead of the keyed HMAC (a third-party reading of the recipe; spec decision 5)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Send License callbacks to a --merchant-endpoint that is not loopback without asking')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;serve;help' {
            [CompletionResult]::new('merchant', 'merchant', [CompletionResultType]::ParameterValue, 'A reference merchant endpoint: verifies every callback and answers as KooGallery documents it')
            [CompletionResult]::new('marketplace', 'marketplace', [CompletionResultType]::ParameterValue, 'A stand-in marketplace: usage push and license open APIs, and License callbacks')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'csm;serve;help;merchant' {
            break
        }
        'csm;serve;help;marketplace' {
            break
        }
        'csm;serve;help;help' {
            break
        }
        'csm;license' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('keygen', 'keygen', [CompletionResultType]::ParameterValue, 'Make an Ed25519 key pair: the private key to FILE (0600), the public key to FILE.pub, and a separate short-code secret to FILE.short (0600)')
            [CompletionResult]::new('gen', 'gen', [CompletionResultType]::ParameterValue, 'Issue signed licenses (codes, short codes or files), or marketplace-shaped PL codes')
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Decode a code or license file and show every field (the signature only if keys are given)')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Judge a code or license file: valid, valid-in-grace, expired, bad-signature, ...')
            [CompletionResult]::new('activate', 'activate', [CompletionResultType]::ParameterValue, 'Activate a marketplace license code (open API, AK/SK-signed)')
            [CompletionResult]::new('heartbeat', 'heartbeat', [CompletionResultType]::ParameterValue, 'Query a marketplace license code''s status (heartbeat open API, AK/SK-signed); exit 0 only if ALIVE')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'csm;license;keygen' {
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Private key file to write (0600); the public key goes to FILE.pub, the short-code secret to FILE.short (0600, never printed)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Replace existing key files')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;license;gen' {
            [CompletionResult]::new('--private-key', '--private-key', [CompletionResultType]::ParameterName, 'Private key file from `csm license keygen`; required, except with --short-secret or --marketplace')
            [CompletionResult]::new('--product', '--product', [CompletionResultType]::ParameterName, 'Product id the license is for; required, except with --marketplace')
            [CompletionResult]::new('--sku', '--sku', [CompletionResultType]::ParameterName, 'SKU (skuCode); required, except with --short (which does not carry it) or --marketplace')
            [CompletionResult]::new('--customer', '--customer', [CompletionResultType]::ParameterName, 'Customer or instance id; required, except with --short (which does not carry it) or --marketplace')
            [CompletionResult]::new('--expires', '--expires', [CompletionResultType]::ParameterName, 'Last valid day, YYYY-MM-DD (UTC), or `never`; required, except with --marketplace')
            [CompletionResult]::new('--issued', '--issued', [CompletionResultType]::ParameterName, 'Issue day, YYYY-MM-DD (UTC); today by default')
            [CompletionResult]::new('--features', '--features', [CompletionResultType]::ParameterName, 'Feature names, comma-separated; not with --short, which does not carry them')
            [CompletionResult]::new('--seats', '--seats', [CompletionResultType]::ParameterName, 'Seats; 0 means not limited')
            [CompletionResult]::new('--grace-days', '--grace-days', [CompletionResultType]::ParameterName, 'Days after expiry during which the license is still accepted (valid-in-grace)')
            [CompletionResult]::new('--short-secret', '--short-secret', [CompletionResultType]::ParameterName, 'Short-code secret file (FILE.short from `csm license keygen`); with --short')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'How many licenses to make')
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Write the batch to FILE (CSV or JSON lines) instead of printing one per line; an existing FILE only with --force, and never a key file')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Batch file format (with --out); by default from the --out extension (.csv, else JSON lines)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--short', '--short', [CompletionResultType]::ParameterName, 'Short code of at most 64 characters, for a marketplace license field. Its tag is an HMAC with the short secret (FILE.short next to --private-key, or --short-secret), not a signature by the private key. Trade-off: it is checked with that same symmetric secret, which can also mint short codes, so ship the secret only where that is acceptable. It does not carry the SKU, customer or features (the product only as a 4-byte digest); 80-bit tag')
            [CompletionResult]::new('--file', '--file', [CompletionResultType]::ParameterName, 'A license file (JSON with a detached signature) instead of a code')
            [CompletionResult]::new('--marketplace', '--marketplace', [CompletionResultType]::ParameterName, 'Codes shaped like the marketplace''s (`PL` + 30 symbols), for test callbacks; unsigned')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Replace an existing --out file (never a key file given here or beside it)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;license;inspect' {
            [CompletionResult]::new('--public-key', '--public-key', [CompletionResultType]::ParameterName, 'Public key file(s): also check the signature')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;license;validate' {
            [CompletionResult]::new('--public-key', '--public-key', [CompletionResultType]::ParameterName, 'Public key file(s) to trust; keep rotated-out keys here so their licenses stay valid')
            [CompletionResult]::new('--short-secret', '--short-secret', [CompletionResultType]::ParameterName, 'Short-code secret file(s) (FILE.short): needed only for short codes. The secret can also mint short codes, so ship it only where that is acceptable')
            [CompletionResult]::new('--at', '--at', [CompletionResultType]::ParameterName, 'Judge as of this day (YYYY-MM-DD or RFC 3339, UTC) instead of today')
            [CompletionResult]::new('--revoked', '--revoked', [CompletionResultType]::ParameterName, 'Revocation list: one license id (16 hex digits) or code per line, `#` comments')
            [CompletionResult]::new('--product', '--product', [CompletionResultType]::ParameterName, 'Refuse licenses issued for another product')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;license;activate' {
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'Base URL of the marketplace open APIs. Else the profile''s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal')
            [CompletionResult]::new('--ak', '--ak', [CompletionResultType]::ParameterName, 'API Gateway access key id (AK)')
            [CompletionResult]::new('--sk-file', '--sk-file', [CompletionResultType]::ParameterName, 'File holding the API Gateway secret key (SK); or set CSM_SK')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait for the answer: 5s, 1500ms; a bare number is seconds (1ms to 10m)')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA')
            [CompletionResult]::new('--real-effect-time', '--real-effect-time', [CompletionResultType]::ParameterName, 'When the software actually started, UTC yyyyMMddHHmmss (real_effect_time)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Call the production marketplace without asking when no --endpoint or profile names the destination')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Call the production marketplace without asking when no --endpoint or profile names the destination')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;license;heartbeat' {
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'Base URL of the marketplace open APIs. Else the profile''s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal')
            [CompletionResult]::new('--ak', '--ak', [CompletionResultType]::ParameterName, 'API Gateway access key id (AK)')
            [CompletionResult]::new('--sk-file', '--sk-file', [CompletionResultType]::ParameterName, 'File holding the API Gateway secret key (SK); or set CSM_SK')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait for the answer: 5s, 1500ms; a bare number is seconds (1ms to 10m)')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Call the production marketplace without asking when no --endpoint or profile names the destination')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Call the production marketplace without asking when no --endpoint or profile names the destination')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;license;help' {
            [CompletionResult]::new('keygen', 'keygen', [CompletionResultType]::ParameterValue, 'Make an Ed25519 key pair: the private key to FILE (0600), the public key to FILE.pub, and a separate short-code secret to FILE.short (0600)')
            [CompletionResult]::new('gen', 'gen', [CompletionResultType]::ParameterValue, 'Issue signed licenses (codes, short codes or files), or marketplace-shaped PL codes')
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Decode a code or license file and show every field (the signature only if keys are given)')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Judge a code or license file: valid, valid-in-grace, expired, bad-signature, ...')
            [CompletionResult]::new('activate', 'activate', [CompletionResultType]::ParameterValue, 'Activate a marketplace license code (open API, AK/SK-signed)')
            [CompletionResult]::new('heartbeat', 'heartbeat', [CompletionResultType]::ParameterValue, 'Query a marketplace license code''s status (heartbeat open API, AK/SK-signed); exit 0 only if ALIVE')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'csm;license;help;keygen' {
            break
        }
        'csm;license;help;gen' {
            break
        }
        'csm;license;help;inspect' {
            break
        }
        'csm;license;help;validate' {
            break
        }
        'csm;license;help;activate' {
            break
        }
        'csm;license;help;heartbeat' {
            break
        }
        'csm;license;help;help' {
            break
        }
        'csm;usage' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Check a file against every local rule (nothing is journaled or sent)')
            [CompletionResult]::new('upload', 'upload', [CompletionResultType]::ParameterValue, 'Journal the records of a file, then send them in signed batches')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Send again everything in the journal that is not accepted yet (same metering_sn)')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Counts by state, the oldest record waiting to be sent, deadlines, the last errors')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write the records in one state to a file (CSV or JSONL) that upload reads back')
            [CompletionResult]::new('resolve', 'resolve', [CompletionResultType]::ParameterValue, 'Give up on a record the marketplace does not hold, so that a corrected one can be uploaded for its period under a new metering_sn')
            [CompletionResult]::new('agent', 'agent', [CompletionResultType]::ParameterValue, 'Run the hourly metering agent: events in (spool directory, POST /events), one record per instance and closed hour out, sent like `upload`; /healthz and /metrics')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'csm;usage;validate' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Input format; by default from the extension (.jsonl/.ndjson/.json are JSONL, else CSV)')
            [CompletionResult]::new('--encoding', '--encoding', [CompletionResultType]::ParameterName, 'The file''s text encoding: gb18030 (or gbk) for CSV saved by Chinese Excel')
            [CompletionResult]::new('--billing', '--billing', [CompletionResultType]::ParameterName, 'How the product''s pay-per-use item is billed (sets the reporting deadlines)')
            [CompletionResult]::new('--journal', '--journal', [CompletionResultType]::ParameterName, 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;usage;upload' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Input format; by default from the extension (.jsonl/.ndjson/.json are JSONL, else CSV)')
            [CompletionResult]::new('--encoding', '--encoding', [CompletionResultType]::ParameterName, 'The file''s text encoding: gb18030 (or gbk) for CSV saved by Chinese Excel')
            [CompletionResult]::new('--billing', '--billing', [CompletionResultType]::ParameterName, 'How the product''s pay-per-use item is billed (sets the reporting deadlines)')
            [CompletionResult]::new('--journal', '--journal', [CompletionResultType]::ParameterName, 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite')
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'The seller key bound to the basic interfaces (signs the usage push)')
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'Marketplace base URL (scheme, host, port); csm appends the API path. Else the profile''s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal')
            [CompletionResult]::new('--batch', '--batch', [CompletionResultType]::ParameterName, 'Records per request (100 to 1000)')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Further attempts of a batch after a network error or 5xx (0 to 100)')
            [CompletionResult]::new('--backoff-ms', '--backoff-ms', [CompletionResultType]::ParameterName, 'First pause between attempts: 500ms, 2s; a bare number is milliseconds, 1ms to 30s (doubles, with jitter, up to 30 s)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait for one answer: 30s, 2m; a bare number is seconds, 1s to 1h')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA')
            [CompletionResult]::new('--usage-value', '--usage-value', [CompletionResultType]::ParameterName, 'How usage_value is written in the body (decision 6: a JSON number)')
            [CompletionResult]::new('--ak', '--ak', [CompletionResultType]::ParameterName, 'API Gateway access key id (with --apig)')
            [CompletionResult]::new('--sk-file', '--sk-file', [CompletionResultType]::ParameterName, 'API Gateway secret key file (with --apig)')
            [CompletionResult]::new('--lease', '--lease', [CompletionResultType]::ParameterName, 'PostgreSQL journal: how long a batch this process claims stays its own before another uploader may take it over and send it again under the same metering_sn (after a crash): 5m, 90s; a bare number is seconds, 1s to 24h. Must outlast one batch with all its retries')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Send to the production marketplace without asking when no --endpoint or profile names the destination')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Send to the production marketplace without asking when no --endpoint or profile names the destination')
            [CompletionResult]::new('--apig', '--apig', [CompletionResultType]::ParameterName, 'Also sign each request for the API Gateway (AK/SK, SDK-HMAC-SHA256), on top of the body signature; needs --ak and --sk-file (or the profile''s)')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Check and count everything, journal nothing, send nothing')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;usage;replay' {
            [CompletionResult]::new('--journal', '--journal', [CompletionResultType]::ParameterName, 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite')
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'The seller key bound to the basic interfaces (signs the usage push)')
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'Marketplace base URL (scheme, host, port); csm appends the API path. Else the profile''s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal')
            [CompletionResult]::new('--batch', '--batch', [CompletionResultType]::ParameterName, 'Records per request (100 to 1000)')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Further attempts of a batch after a network error or 5xx (0 to 100)')
            [CompletionResult]::new('--backoff-ms', '--backoff-ms', [CompletionResultType]::ParameterName, 'First pause between attempts: 500ms, 2s; a bare number is milliseconds, 1ms to 30s (doubles, with jitter, up to 30 s)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait for one answer: 30s, 2m; a bare number is seconds, 1s to 1h')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA')
            [CompletionResult]::new('--usage-value', '--usage-value', [CompletionResultType]::ParameterName, 'How usage_value is written in the body (decision 6: a JSON number)')
            [CompletionResult]::new('--ak', '--ak', [CompletionResultType]::ParameterName, 'API Gateway access key id (with --apig)')
            [CompletionResult]::new('--sk-file', '--sk-file', [CompletionResultType]::ParameterName, 'API Gateway secret key file (with --apig)')
            [CompletionResult]::new('--lease', '--lease', [CompletionResultType]::ParameterName, 'PostgreSQL journal: how long a batch this process claims stays its own before another uploader may take it over and send it again under the same metering_sn (after a crash): 5m, 90s; a bare number is seconds, 1s to 24h. Must outlast one batch with all its retries')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Send to the production marketplace without asking when no --endpoint or profile names the destination')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Send to the production marketplace without asking when no --endpoint or profile names the destination')
            [CompletionResult]::new('--apig', '--apig', [CompletionResultType]::ParameterName, 'Also sign each request for the API Gateway (AK/SK, SDK-HMAC-SHA256), on top of the body signature; needs --ak and --sk-file (or the profile''s)')
            [CompletionResult]::new('--skip-rejected', '--skip-rejected', [CompletionResultType]::ParameterName, 'Leave out records the marketplace rejected for good (resent unchanged, they are refused again; `usage export --state rejected` takes them out to fix)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;usage;status' {
            [CompletionResult]::new('--journal', '--journal', [CompletionResultType]::ParameterName, 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite')
            [CompletionResult]::new('--billing', '--billing', [CompletionResultType]::ParameterName, 'How the product''s pay-per-use item is billed (sets the reporting deadlines)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;usage;export' {
            [CompletionResult]::new('--journal', '--journal', [CompletionResultType]::ParameterName, 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite')
            [CompletionResult]::new('--state', '--state', [CompletionResultType]::ParameterName, 'Which records: those in this state')
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Output file (.jsonl/.ndjson/.json for JSONL, else CSV); written whole or not at all')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;usage;resolve' {
            [CompletionResult]::new('--journal', '--journal', [CompletionResultType]::ParameterName, 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite')
            [CompletionResult]::new('--reason', '--reason', [CompletionResultType]::ParameterName, 'Why (kept in the journal with who and when): e.g. what 话单管理 showed')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--abandon', '--abandon', [CompletionResultType]::ParameterName, 'Abandon it: never send it again and free its period for a corrected record under a new metering_sn. Only after 卖家中心 > 交易管理 > 话单管理 shows that the marketplace does not hold it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;usage;agent' {
            [CompletionResult]::new('--spool', '--spool', [CompletionResultType]::ParameterName, 'Directory the seller''s services drop event files into (.csv with a header, or .jsonl); each is taken in whole and moved to done/, or to failed/ with NAME.error. It must exist (the agent makes only done/ and failed/ in it)')
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Address of POST /events, /healthz and /metrics (not with --once: it has no listener). Another address than loopback needs a token')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding the bearer token POST /events must carry (else CSM_AGENT_TOKEN; else none, on loopback only). Not with --once')
            [CompletionResult]::new('--journal', '--journal', [CompletionResultType]::ParameterName, 'The journal: an SQLite file, or a PostgreSQL database several uploaders share (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default: <data dir>/csm/usage-journal.sqlite')
            [CompletionResult]::new('--state', '--state', [CompletionResultType]::ParameterName, 'The agent''s own state (events seen, hours) in this SQLite file, for a single agent. Default: <journal>.agent.sqlite; with a PostgreSQL journal, the journal''s database, shared by every agent of that journal')
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'The seller key bound to the basic interfaces (signs the usage push)')
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'Marketplace base URL (scheme, host, port); csm appends the API path. Else the profile''s; else the production marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal')
            [CompletionResult]::new('--batch', '--batch', [CompletionResultType]::ParameterName, 'Records per request (100 to 1000)')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Further attempts of a batch after a network error or 5xx (0 to 100)')
            [CompletionResult]::new('--backoff-ms', '--backoff-ms', [CompletionResultType]::ParameterName, 'First pause between attempts: 500ms, 2s; a bare number is milliseconds, 1ms to 30s (doubles, with jitter, up to 30 s)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait for one answer: 30s, 2m; a bare number is seconds, 1s to 1h')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA')
            [CompletionResult]::new('--usage-value', '--usage-value', [CompletionResultType]::ParameterName, 'How usage_value is written in the body (decision 6: a JSON number)')
            [CompletionResult]::new('--ak', '--ak', [CompletionResultType]::ParameterName, 'API Gateway access key id (with --apig)')
            [CompletionResult]::new('--sk-file', '--sk-file', [CompletionResultType]::ParameterName, 'API Gateway secret key file (with --apig)')
            [CompletionResult]::new('--aggregate', '--aggregate', [CompletionResultType]::ParameterName, 'How an hour''s events become its usage_value: their sum, or for a product that bills a level, the highest (max) or the latest (last)')
            [CompletionResult]::new('--grace', '--grace', [CompletionResultType]::ParameterName, 'How long after its end an hour stays open for events still on their way: 5m, 90s; a bare number is seconds, 0s to 2h. Above 15m records miss the 0-15 minute window')
            [CompletionResult]::new('--alarm-after', '--alarm-after', [CompletionResultType]::ParameterName, 'Stall alarm: /healthz turns red when a closed hour is still unreported this long after its end (and stays red this long after an hour failed): 45m, 2h; a bare number is seconds, 1m to 24h')
            [CompletionResult]::new('--on-alarm', '--on-alarm', [CompletionResultType]::ParameterName, 'Shell command run (sh -c) once each time the alarm goes on, and when hours fail; CSM_ALARM_REASON holds why (no other CSM_* variable is passed on: they may hold keys). When the agent stops, one still running gets 5 s, then it is stopped')
            [CompletionResult]::new('--every', '--every', [CompletionResultType]::ParameterName, 'How often the agent takes in the spool, closes due hours and sends: 30s, 1m; a bare number is seconds, 1s to 1h. Not with --once')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Send to the production marketplace without asking when no --endpoint or profile names the destination')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Send to the production marketplace without asking when no --endpoint or profile names the destination')
            [CompletionResult]::new('--apig', '--apig', [CompletionResultType]::ParameterName, 'Also sign each request for the API Gateway (AK/SK, SDK-HMAC-SHA256), on top of the body signature; needs --ak and --sk-file (or the profile''s)')
            [CompletionResult]::new('--heartbeat-zero', '--heartbeat-zero', [CompletionResultType]::ParameterName, 'Close the hours without events of every instance seen in the last 21 days as `zero` (nothing is sent: the marketplace takes usage_value > 0 only)')
            [CompletionResult]::new('--once', '--once', [CompletionResultType]::ParameterName, 'One cycle, then exit: take in the spool, close every hour that is due, send (cron)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;usage;help' {
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Check a file against every local rule (nothing is journaled or sent)')
            [CompletionResult]::new('upload', 'upload', [CompletionResultType]::ParameterValue, 'Journal the records of a file, then send them in signed batches')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Send again everything in the journal that is not accepted yet (same metering_sn)')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Counts by state, the oldest record waiting to be sent, deadlines, the last errors')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write the records in one state to a file (CSV or JSONL) that upload reads back')
            [CompletionResult]::new('resolve', 'resolve', [CompletionResultType]::ParameterValue, 'Give up on a record the marketplace does not hold, so that a corrected one can be uploaded for its period under a new metering_sn')
            [CompletionResult]::new('agent', 'agent', [CompletionResultType]::ParameterValue, 'Run the hourly metering agent: events in (spool directory, POST /events), one record per instance and closed hour out, sent like `upload`; /healthz and /metrics')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'csm;usage;help;validate' {
            break
        }
        'csm;usage;help;upload' {
            break
        }
        'csm;usage;help;replay' {
            break
        }
        'csm;usage;help;status' {
            break
        }
        'csm;usage;help;export' {
            break
        }
        'csm;usage;help;resolve' {
            break
        }
        'csm;usage;help;agent' {
            break
        }
        'csm;usage;help;help' {
            break
        }
        'csm;init' {
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'The merchant''s production address (https://…)')
            [CompletionResult]::new('--protocol', '--protocol', [CompletionResultType]::ParameterName, 'Callback protocol version: v1 or v2')
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'File holding the basic-interface key')
            [CompletionResult]::new('--kit-key-file', '--kit-key-file', [CompletionResultType]::ParameterName, 'File holding the Kit (joint-operation sync) key')
            [CompletionResult]::new('--license-key-file', '--license-key-file', [CompletionResultType]::ParameterName, 'File holding the License delivery key')
            [CompletionResult]::new('--ak', '--ak', [CompletionResultType]::ParameterName, 'API Gateway access key id (AK) for the marketplace open APIs')
            [CompletionResult]::new('--sk-file', '--sk-file', [CompletionResultType]::ParameterName, 'File holding the API Gateway secret key (SK)')
            [CompletionResult]::new('--marketplace-endpoint', '--marketplace-endpoint', [CompletionResultType]::ParameterName, 'Base URL of the marketplace open APIs (usage push, license activation)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;profile' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'The profiles in the config file; `*` marks the one in use')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'One profile''s settings (key file paths, never key contents)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'csm;profile;list' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;profile;show' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;profile;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'The profiles in the config file; `*` marks the one in use')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'One profile''s settings (key file paths, never key contents)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'csm;profile;help;list' {
            break
        }
        'csm;profile;help;show' {
            break
        }
        'csm;profile;help;help' {
            break
        }
        'csm;completions' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;man' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile from the config file (`csm init`) that supplies endpoint and key locations')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object (or JSON lines for streams) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stdout but the result itself')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with a message naming the flag to pass instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'csm;help' {
            [CompletionResult]::new('sign', 'sign', [CompletionResultType]::ParameterValue, 'Compute a signature offline (every KooGallery scheme)')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check a signature; on a mismatch, show what was signed and find the usual mistake')
            [CompletionResult]::new('crypto', 'crypto', [CompletionResultType]::ParameterValue, 'V1 credential encryption (derive the AES key, encrypt, decrypt); a 联营 app''s RSA pair')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send one signed callback to an endpoint and judge the reply')
            [CompletionResult]::new('test-endpoint', 'test-endpoint', [CompletionResultType]::ParameterValue, 'Play the marketplace against an endpoint: lifecycle, idempotency, negative, dial, readiness')
            [CompletionResult]::new('load', 'load', [CompletionResultType]::ParameterValue, 'Signed callbacks at a fixed arrival rate: honest latency percentiles, a CI gate')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run a reference merchant endpoint or a stand-in marketplace on this machine')
            [CompletionResult]::new('license', 'license', [CompletionResultType]::ParameterValue, 'License codes: keys, generation, inspection, validation, activation')
            [CompletionResult]::new('usage', 'usage', [CompletionResultType]::ParameterValue, 'Usage records (话单): validate, upload, replay, status, export, resolve')
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Interactive setup of a profile (endpoint, protocol, key locations)')
            [CompletionResult]::new('profile', 'profile', [CompletionResultType]::ParameterValue, 'The profiles `csm init` wrote: list them, show one (key file paths, never keys)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Write the manual pages into a directory (e.g. ~/.local/share/man/man1)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'csm;help;sign' {
            break
        }
        'csm;help;verify' {
            break
        }
        'csm;help;crypto' {
            [CompletionResult]::new('derive-key', 'derive-key', [CompletionResultType]::ParameterValue, 'Print the AES key derived from the access key (hex)')
            [CompletionResult]::new('encrypt', 'encrypt', [CompletionResultType]::ParameterValue, 'Encrypt VALUE: prints the 16-character IV followed by Base64')
            [CompletionResult]::new('decrypt', 'decrypt', [CompletionResultType]::ParameterValue, 'Decrypt VALUE (IV prefix + Base64): prints the plaintext')
            [CompletionResult]::new('rsa-keygen', 'rsa-keygen', [CompletionResultType]::ParameterValue, 'Make the 3072-bit RSA pair of a joint-operation (联营) app: register FILE.pub (SPKI PEM) with the marketplace, give FILE (PKCS#8 PEM) to `csm serve merchant --app-private-key` or your app, which decrypts applicationSync''s clientSecret with it')
            break
        }
        'csm;help;crypto;derive-key' {
            break
        }
        'csm;help;crypto;encrypt' {
            break
        }
        'csm;help;crypto;decrypt' {
            break
        }
        'csm;help;crypto;rsa-keygen' {
            break
        }
        'csm;help;send' {
            break
        }
        'csm;help;test-endpoint' {
            break
        }
        'csm;help;load' {
            break
        }
        'csm;help;serve' {
            [CompletionResult]::new('merchant', 'merchant', [CompletionResultType]::ParameterValue, 'A reference merchant endpoint: verifies every callback and answers as KooGallery documents it')
            [CompletionResult]::new('marketplace', 'marketplace', [CompletionResultType]::ParameterValue, 'A stand-in marketplace: usage push and license open APIs, and License callbacks')
            break
        }
        'csm;help;serve;merchant' {
            break
        }
        'csm;help;serve;marketplace' {
            break
        }
        'csm;help;license' {
            [CompletionResult]::new('keygen', 'keygen', [CompletionResultType]::ParameterValue, 'Make an Ed25519 key pair: the private key to FILE (0600), the public key to FILE.pub, and a separate short-code secret to FILE.short (0600)')
            [CompletionResult]::new('gen', 'gen', [CompletionResultType]::ParameterValue, 'Issue signed licenses (codes, short codes or files), or marketplace-shaped PL codes')
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Decode a code or license file and show every field (the signature only if keys are given)')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Judge a code or license file: valid, valid-in-grace, expired, bad-signature, ...')
            [CompletionResult]::new('activate', 'activate', [CompletionResultType]::ParameterValue, 'Activate a marketplace license code (open API, AK/SK-signed)')
            [CompletionResult]::new('heartbeat', 'heartbeat', [CompletionResultType]::ParameterValue, 'Query a marketplace license code''s status (heartbeat open API, AK/SK-signed); exit 0 only if ALIVE')
            break
        }
        'csm;help;license;keygen' {
            break
        }
        'csm;help;license;gen' {
            break
        }
        'csm;help;license;inspect' {
            break
        }
        'csm;help;license;validate' {
            break
        }
        'csm;help;license;activate' {
            break
        }
        'csm;help;license;heartbeat' {
            break
        }
        'csm;help;usage' {
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Check a file against every local rule (nothing is journaled or sent)')
            [CompletionResult]::new('upload', 'upload', [CompletionResultType]::ParameterValue, 'Journal the records of a file, then send them in signed batches')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Send again everything in the journal that is not accepted yet (same metering_sn)')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Counts by state, the oldest record waiting to be sent, deadlines, the last errors')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write the records in one state to a file (CSV or JSONL) that upload reads back')
            [CompletionResult]::new('resolve', 'resolve', [CompletionResultType]::ParameterValue, 'Give up on a record the marketplace does not hold, so that a corrected one can be uploaded for its period under a new metering_sn')
            [CompletionResult]::new('agent', 'agent', [CompletionResultType]::ParameterValue, 'Run the hourly metering agent: events in (spool directory, POST /events), one record per instance and closed hour out, sent like `upload`; /healthz and /metrics')
            break
        }
        'csm;help;usage;validate' {
            break
        }
        'csm;help;usage;upload' {
            break
        }
        'csm;help;usage;replay' {
            break
        }
        'csm;help;usage;status' {
            break
        }
        'csm;help;usage;export' {
            break
        }
        'csm;help;usage;resolve' {
            break
        }
        'csm;help;usage;agent' {
            break
        }
        'csm;help;init' {
            break
        }
        'csm;help;profile' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'The profiles in the config file; `*` marks the one in use')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'One profile''s settings (key file paths, never key contents)')
            break
        }
        'csm;help;profile;list' {
            break
        }
        'csm;help;profile;show' {
            break
        }
        'csm;help;completions' {
            break
        }
        'csm;help;man' {
            break
        }
        'csm;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
