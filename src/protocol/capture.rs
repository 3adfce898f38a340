//! Raw HTTP request and response captures (as printed by `nc -l` or a server log).
