//! ISO 3166-1 alpha-2 country codes: a user's usage location (Graph `usageLocation`, "a
//! two-letter country code (ISO standard 3166) ... required for users who will be assigned
//! licenses", learn.microsoft.com/graph/api/resources/user, issue 12 item 4).
//!
//! The 249 officially assigned codes; user-assigned and reserved codes (`XK`, `EU`, `UK`)
//! are not countries Graph accepts.

/// The syntax of a code, as the JSON Schema states it ([`is_country`] also checks the list).
pub const PATTERN: &str = r"^[A-Z]{2}$";

/// The assigned codes, sorted (binary search).
pub const CODES: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// Whether `code` is an assigned ISO 3166-1 alpha-2 code (exact, upper case).
pub fn is_country(code: &str) -> bool {
    CODES.binary_search(&code).is_ok()
}

/// What to write instead of `code`, for a hint: its upper case when that is a code, `GB`
/// for the common `UK`, else (or when `code` is fine) `None`.
pub fn suggest(code: &str) -> Option<String> {
    if is_country(code) {
        return None;
    }
    let upper = code.to_ascii_uppercase();
    if upper == "UK" {
        return Some("GB".into());
    }
    is_country(&upper).then_some(upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_well_formed_and_complete() {
        assert!(
            CODES.windows(2).all(|w| w[0] < w[1]),
            "CODES must stay sorted"
        );
        let re = regex::Regex::new(PATTERN).unwrap();
        assert!(CODES.iter().all(|c| re.is_match(c)));
        assert_eq!(CODES.len(), 249, "ISO 3166-1 assigns 249 alpha-2 codes");
    }

    // issue 12 item 4: table of codes and what a hint suggests.
    #[test]
    fn codes_and_suggestions() {
        for (code, ok, suggestion) in [
            ("US", true, None),
            ("DE", true, None),
            ("GB", true, None),
            ("us", false, Some("US")),
            ("UK", false, Some("GB")),
            ("uk", false, Some("GB")),
            ("XK", false, None),
            ("ZZ", false, None),
            ("USA", false, None),
            ("", false, None),
        ] {
            assert_eq!(is_country(code), ok, "{code}");
            assert_eq!(suggest(code).as_deref(), suggestion, "{code}");
        }
    }
}
