//! Grant and session ids: 48-bit random numbers in the kernel, `g-`/`s-` plus 12
//! hex digits for people. Random rather than sequential so an id from one agent's
//! history is never mistaken for another's.

/// A fresh random id (never 0, which means "none").
pub fn fresh() -> u64 {
    loop {
        let id = rand::random::<u64>() & 0xffff_ffff_ffff;
        if id != 0 {
            return id;
        }
    }
}

pub fn grant(id: u64) -> String {
    format!("g-{id:012x}")
}

pub fn session(id: u64) -> String {
    format!("s-{id:012x}")
}

/// Parses `g-…` (or the bare hex).
pub fn parse_grant(s: &str) -> Option<u64> {
    parse(s, "g-")
}

/// Parses `s-…` (or the bare hex).
pub fn parse_session(s: &str) -> Option<u64> {
    parse(s, "s-")
}

fn parse(s: &str, prefix: &str) -> Option<u64> {
    let hex = s.trim().strip_prefix(prefix).unwrap_or(s.trim());
    if hex.is_empty() || hex.len() > 12 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().filter(|v| *v != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for _ in 0..100 {
            let id = fresh();
            assert_eq!(parse_grant(&grant(id)), Some(id));
            assert_eq!(parse_session(&session(id)), Some(id));
        }
        assert_eq!(parse_grant("g-zz"), None);
        assert_eq!(parse_grant("g-"), None);
        assert_eq!(parse_session("s-0000000000001"), None, "13 digits");
    }
}
