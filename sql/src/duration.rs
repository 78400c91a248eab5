//! Durations as rules and window sizes write them: `30s`, `5m`, `1h`, `1d`, or
//! `5 minutes`, `1 hour`.

/// Nanoseconds in `s`.
pub fn parse(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (such as 30s, 5m, 1h, 1d)"))?;
    let secs = match unit.trim() {
        "ms" | "millisecond" | "milliseconds" => return Ok(n * 1_000_000),
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => 86_400,
        u => return Err(format!("{s:?}: unknown unit {u:?} (use s, m, h or d)")),
    };
    n.checked_mul(secs * 1_000_000_000)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_units_parse() {
        assert_eq!(parse("1m"), Ok(60_000_000_000));
        assert_eq!(parse("5 minutes"), Ok(300_000_000_000));
        assert_eq!(parse("24h"), parse("1d"));
        assert!(parse("5 fortnights").unwrap_err().contains("unknown unit"));
        assert!(parse("m").is_err());
    }
}
