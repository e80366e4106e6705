//! `flowgate::config::Config::parse` (TOML text plus `FLOWGATE_<TABLE>__<KEY>`
//! overrides), then `Config::validate`, on arbitrary UTF-8: errors are fine, panics are
//! not. The input is the TOML text, optionally followed by a NUL byte and override lines
//! `NAME=VALUE` (`FLOWGATE_` is put in front of a name that lacks it). A config that
//! parses parses again to the same value.
#![no_main]

use flowgate::config::Config;
use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(input) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    let (text, overrides) = input.split_once('\0').unwrap_or((input, ""));
    let env: Vec<(String, String)> = overrides
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| {
            let name = if name.starts_with("FLOWGATE_") {
                name.to_owned()
            } else {
                format!("FLOWGATE_{name}")
            };
            (name, value.to_owned())
        })
        .collect();
    let Ok(config) = Config::parse(text, env.clone().into_iter()) else {
        return Corpus::Keep;
    };
    let _ = config.validate();
    let again = Config::parse(text, env.into_iter()).expect("parsed once, parses again");
    assert_eq!(config, again, "the same text parsed twice");
    Corpus::Keep
});
