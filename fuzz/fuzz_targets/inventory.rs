#![no_main]

//! Feed arbitrary text to the inventory loader, then compile every node of an
//! inventory that loads. Neither may panic, hang or overflow the stack.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(loaded) = pigsty::inventory::load_str("fuzz.yml", text) else {
        return;
    };
    for n in &loaded.fleet.nodes {
        let _ = pigsty::compile::compile(&loaded.fleet, n, pigsty::catalog::Catalog::debian12());
    }
});
