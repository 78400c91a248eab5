//! Money: a JSON string (`"12.90"`) or number (`12.9`) parsed into `Decimal` exactly.
//!
//! Numbers are read from their source text (the field's raw JSON), never through
//! `f64`, so `0.1` is exactly one tenth. Money is always written back as a string.

use rust_decimal::Decimal;

/// Parses a money value from the raw JSON text of a field (`"12.90"` with its quotes,
/// or `12.9`).
///
/// Accepts a JSON string holding a plain decimal (`"12.90"`, `"-3"`) or a JSON number
/// (`12.9`, `1e2`). Rejects everything else with a message that quotes the input.
pub fn parse_money(text: &str) -> Result<Decimal, String> {
    if let Some(inner) = text.strip_prefix('"') {
        // A JSON string: decode escapes only when there are any.
        let s: std::borrow::Cow<'_, str> = if inner.contains('\\') {
            serde_json::from_str::<String>(text)
                .map_err(|e| format!("invalid decimal {text}: {e}"))?
                .into()
        } else {
            inner.strip_suffix('"').unwrap_or(inner).into()
        };
        parse_decimal_text(&s).ok_or_else(|| format!("invalid decimal {text}"))
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        parse_decimal_text(text).ok_or_else(|| format!("invalid decimal {text}"))
    } else {
        Err(format!(
            "invalid decimal {text}: expected a string or a number"
        ))
    }
}

/// Parses decimal text: an optional sign, digits with at most one `.`, an optional exponent.
pub fn parse_decimal_text(s: &str) -> Option<Decimal> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    // Only plain ASCII decimal syntax: no thousands separators, no `,` as a point, no
    // `NaN`/`inf`, no leading `+` that JSON would reject as a number.
    let plain = s
        .bytes()
        .enumerate()
        .all(|(i, b)| b.is_ascii_digit() || b == b'.' || (i == 0 && b == b'-'));
    if plain {
        return Decimal::from_str_exact(s).ok();
    }
    let scientific = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if scientific && s.contains(['e', 'E']) {
        return Decimal::from_scientific(s).ok();
    }
    None
}

/// Serde helper for config money: a string such as `"0.01"`, parsed exactly.
pub fn deserialize_money_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    parse_decimal_text(&s).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "invalid decimal {s:?} (money is a string such as \"0.01\")"
        ))
    })
}

/// Digits after the point in the currency's minor unit (ISO 4217): 0 for `JPY`,
/// `KRW` and the like, 3 for `KWD`, `BHD`, `OMR`, `JOD`, `TND`, `LYD`, `IQD`, else 2.
pub fn minor_units(currency: Option<&str>) -> u32 {
    match currency.unwrap_or("") {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// `price` less `pct` percent, rounded half away from zero to the currency's minor unit.
pub fn discounted(price: Decimal, pct: u32, currency: Option<&str>) -> Decimal {
    let factor = Decimal::ONE - Decimal::from(pct) / Decimal::ONE_HUNDRED;
    (price * factor).round_dp_with_strategy(
        minor_units(currency),
        rust_decimal::RoundingStrategy::MidpointAwayFromZero,
    )
}

/// Serde for decimals in checkpointed state: the 16-byte exact representation
/// (`#[serde(with = "crate::money::exact")]`), which binary formats read back as written.
pub mod exact {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the 16 bytes.
    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&d.serialize())
    }

    /// Reads the 16 bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let b = <&[u8]>::deserialize(d)?;
        let b: [u8; 16] = b
            .try_into()
            .map_err(|_| serde::de::Error::custom("a decimal is 16 bytes"))?;
        Ok(Decimal::deserialize(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_numbers_parse_exactly() {
        assert_eq!(parse_money("\"12.90\"").unwrap().to_string(), "12.90");
        assert_eq!(parse_money("12.9").unwrap().to_string(), "12.9");
        assert_eq!(parse_money("0.1").unwrap(), Decimal::new(1, 1));
        assert_eq!(parse_money("-3").unwrap(), Decimal::new(-3, 0));
        assert_eq!(parse_money("1e2").unwrap(), Decimal::new(100, 0));
        assert_eq!(
            parse_money("1234567890.123456789").unwrap().to_string(),
            "1234567890.123456789"
        );
    }

    #[test]
    fn rejects_comma_and_junk() {
        assert_eq!(
            parse_money("\"12,90\"").unwrap_err(),
            "invalid decimal \"12,90\""
        );
        assert!(parse_money("\"\"").is_err());
        assert!(parse_money("\"NaN\"").is_err());
        assert!(parse_money("true").is_err());
        assert!(parse_money("\"1.2.3\"").is_err());
    }
}

/// [`exact`] for an optional decimal.
pub mod opt_exact {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes `None` or the 16 bytes.
    pub fn serialize<S: Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        d.map(|d| d.serialize()).serialize(s)
    }

    /// Reads what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        Ok(Option::<[u8; 16]>::deserialize(d)?.map(Decimal::deserialize))
    }
}
