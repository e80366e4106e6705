//! Name patterns of the configuration (`include`/`exclude` of sources, `[filter]` rules
//! and NSGs): case-insensitive, `*` for any run of characters.

/// Case-insensitive match where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.as_bytes(), value.as_bytes());
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi].eq_ignore_ascii_case(&v[vi]) {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("fabrikam*", "FABRIKAMRG"));
        assert!(glob_match("*-nsg", "FABRIAKMVM1-NSG"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(!glob_match("prod", "production"));
        assert!(glob_match("PROD", "prod"));
    }
}
