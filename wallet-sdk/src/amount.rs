//! Exact rubles ↔ kopecks text conversion (no floating point).

use crate::error::{Error, Result};

/// Parses `"1250.50"`, `"1 250,5"`, `"7"` into kopecks.
pub fn parse_rubles(s: &str) -> Result<u64> {
    let t: String = s.trim().chars().filter(|c| !c.is_whitespace() && *c != '_').collect();
    let t = t.replace(',', ".");
    let bad = || Error::Config(format!("bad amount {s:?}: expected rubles like 1250.50"));
    let (whole, frac) = match t.split_once('.') {
        Some((w, f)) => (w, f),
        None => (t.as_str(), ""),
    };
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 2
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let rubles: u64 = whole.parse().map_err(|_| bad())?;
    let kop: u64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u64>().map_err(|_| bad())? * 10,
        _ => frac.parse().map_err(|_| bad())?,
    };
    rubles.checked_mul(100).and_then(|r| r.checked_add(kop)).ok_or_else(bad)
}

/// `125050` → `"1250.50"`.
pub fn format_rubles(kopecks: u64) -> String {
    format!("{}.{:02}", kopecks / 100, kopecks % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_conversions() {
        assert_eq!(parse_rubles("1250.50").unwrap(), 125_050);
        assert_eq!(parse_rubles("1 250,5").unwrap(), 125_050);
        assert_eq!(parse_rubles("7").unwrap(), 700);
        assert_eq!(parse_rubles("0.01").unwrap(), 1);
        assert!(parse_rubles("1.005").is_err());
        assert!(parse_rubles("-1").is_err());
        assert!(parse_rubles("1e3").is_err());
        assert!(parse_rubles("184467440737095517").is_err());
        assert_eq!(format_rubles(125_050), "1250.50");
        assert_eq!(format_rubles(5), "0.05");
    }
}
