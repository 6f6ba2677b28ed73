//! Identity comparison: the names the service compares without regard to case.
//!
//! UPNs and email addresses (P1, I13), security group display names (used to adopt a group,
//! I12) and instance URL names (host name labels, I5) are case-insensitive in the service:
//! `Ana@x.com` and `ana@x.com` are one user. Validation, the planner and the local provider
//! compare them through [`fold`], so that they agree with each other and with the service.
//!
//! Lower-casing is Unicode-aware (`str::to_lowercase`, the simple per-character mapping the
//! local provider's P1 index uses), with an ASCII fast path: a name that is already lower
//! case (the common case: files are mostly written that way) is borrowed, not copied, so
//! comparing 100,000 keys costs no allocation. URL names are ASCII by their pattern (I5), so
//! ASCII lower-casing is exact for them; [`fold`] gives the same result.

use std::borrow::Cow;

/// `s` in the form identities are compared in: lower case. Borrowed when `s` is already.
pub fn fold(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else if s.chars().any(|c| c.to_lowercase().ne(std::iter::once(c))) {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Whether `a` and `b` name the same object (equal once folded); no allocation when both
/// are ASCII.
pub fn same(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        fold(a) == fold(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_ascii_and_unicode_and_borrows_lower_case() {
        assert!(matches!(fold("ana@x.com"), Cow::Borrowed(_)));
        assert_eq!(fold("Ana@X.com"), "ana@x.com");
        assert_eq!(fold("ÉLODIE@x.com"), "élodie@x.com");
        assert!(matches!(fold("élodie@x.com"), Cow::Borrowed(_)));
        assert!(same("Ana@x.com", "aNA@X.COM"));
        assert!(same("ÉLODIE@x.com", "élodie@x.com"));
        assert!(!same("ana@x.com", "anna@x.com"));
    }
}
