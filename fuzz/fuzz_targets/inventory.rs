#![no_main]

//! Feed arbitrary text to the inventory loader, render its findings as a terminal
//! would show them (the source snippet included), then compile every node of an
//! inventory that loads. None of it may panic, hang or overflow the stack.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match pigsty::inventory::load_str("fuzz.yml", text) {
        Err(invalid) => {
            let _ = pigsty::diag::render(&invalid.findings, Some(text));
        }
        Ok(loaded) => {
            let _ = pigsty::diag::render(&loaded.warnings, Some(text));
            for n in &loaded.fleet.nodes {
                let _ = pigsty::compile::compile(&loaded.fleet, n);
            }
        }
    }
});
