//! ISO 4217 currency codes accepted as an instance's base currency (I3).
//!
//! ISO 4217 "List One" (current currency and funds codes), including codes withdrawn only
//! recently (ANG, CUC, HRK, SLL, ZWL) so that existing instances still validate, and
//! excluding the codes that are not currencies an organization keeps its books in: precious
//! metals (XAG, XAU, XPD, XPT), bond-market units (XBA-XBD), SDR (XDR), SUCRE (XSU), the ADB
//! unit (XUA), testing (XTS) and "no currency" (XXX).

/// The accepted codes, sorted (binary search).
pub const CODES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HRK", "HTG", "HUF", "IDR",
    "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW",
    "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA",
    "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD",
    "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG",
    "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE",
    "SLL", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP",
    "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
    "ZWL",
];

/// Whether `code` is an accepted ISO 4217 currency code (exact, upper case).
pub fn is_currency(code: &str) -> bool {
    CODES.binary_search(&code).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_and_well_formed() {
        assert!(
            CODES.windows(2).all(|w| w[0] < w[1]),
            "CODES must stay sorted"
        );
        assert!(CODES
            .iter()
            .all(|c| crate::domain::syntax::is_currency_syntax(c)));
    }

    #[test]
    fn known_and_unknown_codes() {
        for c in ["USD", "EUR", "GBP", "JPY", "CHF", "INR", "BRL", "XOF"] {
            assert!(is_currency(c), "{c}");
        }
        for c in ["XXX", "XAU", "ABC", "usd", "US", "EURO", "XTS"] {
            assert!(!is_currency(c), "{c}");
        }
    }
}
