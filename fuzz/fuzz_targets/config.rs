//! appliance.toml as an operator may get it wrong: any text gives a configuration or
//! one error line naming the key, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |name: &str| (name == "WXLOGIN_SECRET_MAIN").then(|| "secret".to_string());
    if let Err(e) = wxlogin::config::parse(text, Path::new("/etc/wxlogin"), &env) {
        assert!(!e.to_string().contains('\n'), "an error of more than one line: {e}");
    }
});
