//! Every parser the rotation function applies to bytes it does not control (the invocation event
//! and a secret's JSON): no panic, and no error text carries the input's password.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rotate_postgres::untrusted::parse_untrusted(data);
});
