//! Every decoder of untrusted bytes, the canonical-encoding property and the
//! signature rule (batch == single). See `ruble_domain_fuzz::decode_op`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ruble_domain_fuzz::decode_op(data));
