//! Random programs of operations and blocks against the state machine, with
//! a model and the invariants checked after every block. See
//! `ruble_domain_fuzz::apply_ops`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ruble_domain_fuzz::apply_ops(data));
