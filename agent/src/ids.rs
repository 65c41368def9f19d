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
    printed('g', id)
}

pub fn session(id: u64) -> String {
    printed('s', id)
}

/// `P-` and the id in 12 lowercase hex digits (more if it has more): what
/// `format!("{prefix}-{id:012x}")` prints, without the formatting machinery, since
/// every kernel event names its grant and session.
fn printed(prefix: char, id: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - id.leading_zeros() as usize).div_ceil(4).max(12);
    let mut s = String::with_capacity(2 + digits);
    s.push(prefix);
    s.push('-');
    for i in (0..digits).rev() {
        s.push(char::from(HEX[((id >> (4 * i)) & 0xf) as usize]));
    }
    s
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
    fn printed_as_format_would() {
        for id in [0, 1, 0xabc, 0xffff_ffff_ffff, 0x1_0000_0000_0000, u64::MAX, fresh()] {
            assert_eq!(grant(id), format!("g-{id:012x}"));
            assert_eq!(session(id), format!("s-{id:012x}"));
        }
    }

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
