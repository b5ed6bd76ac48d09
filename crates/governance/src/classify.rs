//! PII auto-classification of columns.
//!
//! [`classify_column`] looks at a column's *name* and a *sample* of its
//! non-null values (as text) and says which kind of personal data, if any, the
//! column holds. It is pure: no I/O, no state, no sampled value ever leaves it.
//!
//! # Approach
//!
//! For every [`PiiKind`] two independent pieces of evidence are gathered:
//!
//! * **Value evidence.** A hand-written validator runs over every non-blank
//!   sampled value (values are trimmed; blank ones are not counted). The
//!   validators check structure *and* checksums where the format has one:
//!   e-mail `local@domain.tld` shape, E.164 and separated national phone
//!   numbers, Luhn-valid card numbers, US SSNs, IPv4/IPv6
//!   ([`std::net::IpAddr`]), mod-97-valid IBANs (ISO 13616) and capitalised
//!   person names. The value fraction `f` is the share of non-blank samples
//!   that match (a Luhn-valid card number without a well-known issuer prefix
//!   counts 0.8 instead of 1).
//! * **Name evidence.** The column name is split into lower-case tokens (on
//!   `_`, `-`, `.`, spaces and camelCase boundaries: `customerEmailAddr` →
//!   `customer`, `email`, `addr`) and matched against per-kind keywords. A
//!   *strong* hint names the kind unambiguously (`email`, `phone`, `ssn`,
//!   `iban`, `ip`, `first_name`, …); a *weak* hint only makes it plausible
//!   (`mail`, `tel`, `card`, `account`, a bare `name`, …).
//!
//! # Confidence
//!
//! With `n` non-blank samples of which `m` match and value fraction `f`,
//! value evidence *counts* when `m >= MIN_MATCHES` (3). Then:
//!
//! | name hint | value evidence counts        | otherwise                          |
//! |-----------|------------------------------|------------------------------------|
//! | strong    | `min(1, f + 0.15)`           | `0.6` if `n == 0`, else `0.6 × f`  |
//! | weak      | `min(1, f + 0.05)`           | `0`                                |
//! | none      | `f`                          | `0`                                |
//!
//! So name-only evidence never exceeds 0.6, and values that contradict the
//! name (a column `email_verified` full of booleans) pull it towards 0. Person
//! names are the exception to value-only detection: capitalised words are too
//! common (products, cities, countries) so [`PiiKind::PersonName`] needs a
//! name hint and scores 0 without one; `name` must be bare or qualified by a
//! person-ish word (`first_name`, `customer_name`, `surname`), never by
//! anything else (`product_name`, `file_name`, `user_name`).
//!
//! The kind with the highest confidence wins; ties go to the more specific
//! kind, in the order credit card, IBAN, national id, e-mail, IP address,
//! phone, person name. Below 0.5 the column is not classified.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

/// A PII kind tarn detects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// An e-mail address (`local@domain.tld`).
    Email,
    /// A phone number, E.164 (`+` and 8–15 digits) or a separated national format.
    Phone,
    /// A payment card number (13–19 digits, Luhn-valid).
    CreditCard,
    /// A national identifier; today a US social security number.
    NationalId,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// An international bank account number (ISO 13616, mod-97-valid).
    Iban,
    /// A person's name.
    PersonName,
}

impl PiiKind {
    /// Every kind, in declaration order.
    pub const ALL: [PiiKind; 7] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::CreditCard,
        PiiKind::NationalId,
        PiiKind::IpAddress,
        PiiKind::Iban,
        PiiKind::PersonName,
    ];

    /// The classification tag stored in the catalog: `pii:email`, `pii:phone`,
    /// `pii:credit_card`, `pii:national_id`, `pii:ip_address`, `pii:iban`,
    /// `pii:person_name`.
    pub fn tag(self) -> &'static str {
        match self {
            PiiKind::Email => "pii:email",
            PiiKind::Phone => "pii:phone",
            PiiKind::CreditCard => "pii:credit_card",
            PiiKind::NationalId => "pii:national_id",
            PiiKind::IpAddress => "pii:ip_address",
            PiiKind::Iban => "pii:iban",
            PiiKind::PersonName => "pii:person_name",
        }
    }
}

/// One detection for one column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// The column's name, as given.
    pub column: String,
    /// The kind of PII detected.
    pub kind: PiiKind,
    /// 0.0..=1.0
    pub confidence: f64,
    /// Human-readable evidence, e.g. "97 of 100 sampled values are email
    /// addresses; name matches `email`". Never includes sampled values
    /// (they are PII), only counts and keywords from the column name.
    pub evidence: String,
}

/// Below this confidence a column is not classified.
const THRESHOLD: f64 = 0.5;
/// Fewest matching values for value evidence to count.
const MIN_MATCHES: usize = 3;
/// The most name evidence alone can give.
const NAME_ONLY_MAX: f64 = 0.6;
/// Added to the value fraction when the name strongly hints at the kind.
const STRONG_BOOST: f64 = 0.15;
/// The most a bare `name` column of name-like values gets: below the
/// confidence at which tags drive masking without review.
const WEAK_NAME_MAX: f64 = 0.75;

/// Added to the value fraction when the name weakly hints at the kind.
const WEAK_BOOST: f64 = 0.05;
/// What a Luhn-valid card number without a well-known issuer prefix counts.
const UNKNOWN_ISSUER_WEIGHT: f64 = 0.8;

/// Tie-break order: more specific kinds first.
const PRIORITY: [PiiKind; 7] = [
    PiiKind::CreditCard,
    PiiKind::Iban,
    PiiKind::NationalId,
    PiiKind::Email,
    PiiKind::IpAddress,
    PiiKind::Phone,
    PiiKind::PersonName,
];

/// Classifies one column from its name and a sample of its non-null values (as
/// text). Returns the best detection, or `None` when its confidence is below
/// 0.5. See the [module documentation](self) for the scoring rules.
pub fn classify_column(name: &str, samples: &[&str]) -> Option<Detection> {
    let tokens = tokenize(name);
    let values: Vec<&str> = samples
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    let mut best: Option<Detection> = None;
    for kind in PRIORITY {
        let Some(candidate) = score(kind, name, &tokens, &values) else {
            continue;
        };
        // Strictly greater: on a tie the earlier (more specific) kind stays.
        if best
            .as_ref()
            .is_none_or(|b| candidate.confidence > b.confidence)
        {
            best = Some(candidate);
        }
    }
    best.filter(|d| d.confidence >= THRESHOLD)
}

/// How strongly a column name suggests a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strength {
    Weak,
    Strong,
}

/// A name hint: its strength and the keyword (from the column name) it matched.
#[derive(Debug)]
struct Hint {
    strength: Strength,
    label: String,
}

/// Scores one kind for one column; `None` when there is no evidence at all.
fn score(kind: PiiKind, column: &str, tokens: &[String], values: &[&str]) -> Option<Detection> {
    let hint = name_hint(kind, tokens);
    let hinted = hint.is_some();
    let n = values.len();
    let mut matches = 0usize;
    let mut weighted = 0.0f64;
    let mut known_issuer = 0usize;
    for value in values {
        let s = value_score(kind, value, hinted);
        if s > 0.0 {
            matches += 1;
            weighted += s;
            if s >= 1.0 {
                known_issuer += 1;
            }
        }
    }
    if matches == 0 && hint.is_none() {
        return None;
    }
    let f = if n == 0 { 0.0 } else { weighted / n as f64 };
    let counts = matches >= MIN_MATCHES;
    let confidence = match (hint.as_ref().map(|h| h.strength), counts) {
        (Some(Strength::Strong), true) => (f + STRONG_BOOST).min(1.0),
        (Some(Strength::Strong), false) if n == 0 => NAME_ONLY_MAX,
        (Some(Strength::Strong), false) => NAME_ONLY_MAX * f,
        // A bare `name` column of capitalised words is as often a product
        // or place as a person: shown, but left for a person to confirm.
        (Some(Strength::Weak), true) if kind == PiiKind::PersonName => {
            (f + WEAK_BOOST).min(WEAK_NAME_MAX)
        }
        (Some(Strength::Weak), true) => (f + WEAK_BOOST).min(1.0),
        (None, true) if kind != PiiKind::PersonName => f,
        _ => 0.0,
    };

    let mut evidence = if n == 0 {
        "no non-empty sampled values".to_owned()
    } else {
        format!(
            "{matches} of {n} sampled values are {}",
            description(kind, hinted)
        )
    };
    if kind == PiiKind::CreditCard && matches > 0 {
        evidence.push_str(&format!(
            " ({known_issuer} with a well-known issuer prefix)"
        ));
    }
    if matches > 0 && !counts {
        evidence.push_str(&format!(" (fewer than {MIN_MATCHES}, too few to count)"));
    }
    if let Some(hint) = &hint {
        let strength = match hint.strength {
            Strength::Strong => "",
            Strength::Weak => " (weak hint)",
        };
        evidence.push_str(&format!("; name matches `{}`{strength}", hint.label));
    } else if kind == PiiKind::PersonName {
        evidence.push_str("; name does not suggest a person's name");
    }
    Some(Detection {
        column: column.to_owned(),
        kind,
        confidence: confidence.clamp(0.0, 1.0),
        evidence,
    })
}

/// What matching values of `kind` are, for the evidence text.
fn description(kind: PiiKind, hinted: bool) -> &'static str {
    match kind {
        PiiKind::Email => "email addresses",
        PiiKind::Phone => "phone numbers",
        PiiKind::CreditCard => "Luhn-valid card numbers",
        PiiKind::NationalId if hinted => "US social security numbers (dashed or 9 digits)",
        PiiKind::NationalId => "US social security numbers",
        PiiKind::IpAddress => "IP addresses",
        PiiKind::Iban => "IBANs with a valid checksum",
        PiiKind::PersonName => "capitalised person names",
    }
}

/// How well one trimmed, non-blank value matches `kind`: 0 (no), 1 (yes) or,
/// for card numbers of an unknown issuer, [`UNKNOWN_ISSUER_WEIGHT`]. `hinted`
/// says whether the column name hints at the kind, which admits plain-digit
/// phone numbers and SSNs.
fn value_score(kind: PiiKind, value: &str, hinted: bool) -> f64 {
    let yes = match kind {
        PiiKind::CreditCard => return card_score(value),
        PiiKind::Email => is_email(value),
        PiiKind::Phone => is_phone(value, hinted),
        PiiKind::NationalId => is_ssn(value, hinted),
        PiiKind::IpAddress => value.parse::<IpAddr>().is_ok(),
        PiiKind::Iban => is_iban(value),
        PiiKind::PersonName => is_person_name(value),
    };
    if yes { 1.0 } else { 0.0 }
}

// ---------------------------------------------------------------------------
// Column names
// ---------------------------------------------------------------------------

/// Splits a column name into lower-case tokens on `_`, `-`, `.`, spaces and
/// camelCase boundaries (`clientIPAddress` → `client`, `ip`, `address`).
fn tokenize(name: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for part in name.split(['_', '-', '.', ' ']) {
        let chars: Vec<char> = part.chars().collect();
        let mut current = String::new();
        for (i, &c) in chars.iter().enumerate() {
            let boundary = i > 0 && c.is_uppercase() && {
                let prev = chars[i - 1];
                let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
                prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower)
            };
            if boundary && !current.is_empty() {
                tokens.push(std::mem::take(&mut current));
            }
            current.extend(c.to_lowercase());
        }
        if !current.is_empty() {
            tokens.push(current);
        }
    }
    tokens
}

/// Whether some run of adjacent tokens, concatenated, equals `keyword`
/// (`e`, `mail` matches `email`; `zip` does not match `ip`).
fn has_token_run(tokens: &[String], keyword: &str) -> bool {
    (0..tokens.len()).any(|start| {
        let mut joined = String::new();
        for token in &tokens[start..] {
            joined.push_str(token);
            if joined == keyword {
                return true;
            }
            if !keyword.starts_with(joined.as_str()) {
                return false;
            }
        }
        false
    })
}

/// Whether some single token begins or ends with `keyword` (`useremail`,
/// `homephone`).
fn has_affix(tokens: &[String], keyword: &str) -> bool {
    tokens
        .iter()
        .any(|t| t.starts_with(keyword) || t.ends_with(keyword))
}

/// The column-name keywords of one kind.
struct Keywords {
    /// Strong hints when equal to a token or a run of adjacent tokens.
    strong: &'static [&'static str],
    /// Strong hints when a single token begins or ends with them.
    strong_affix: &'static [&'static str],
    /// Weak hints when equal to a token or a run of adjacent tokens.
    weak: &'static [&'static str],
}

/// The name hint for `kind`, if the column name gives one.
fn name_hint(kind: PiiKind, tokens: &[String]) -> Option<Hint> {
    let keywords = match kind {
        PiiKind::Email => Keywords {
            strong: &["email"],
            strong_affix: &["email"],
            weak: &["mail"],
        },
        PiiKind::Phone => Keywords {
            strong: &["phone", "mobile", "msisdn"],
            strong_affix: &["phone"],
            weak: &["tel", "telno", "cell", "fax"],
        },
        PiiKind::CreditCard => Keywords {
            strong: &[
                "creditcard",
                "cardnumber",
                "cardnum",
                "cardno",
                "ccnumber",
                "ccnum",
                "ccno",
            ],
            strong_affix: &["creditcard", "cardnumber"],
            weak: &["card", "cc", "pan"],
        },
        PiiKind::NationalId => Keywords {
            strong: &[
                "ssn",
                "nationalid",
                "taxid",
                "taxpayerid",
                "socialsecurity",
                "itin",
                "nationalinsurance",
                "nino",
            ],
            strong_affix: &["ssn"],
            weak: &["tin", "nin"],
        },
        PiiKind::IpAddress => Keywords {
            strong: &["ip", "ipaddr", "ipaddress", "ipv4", "ipv6", "ip4", "ip6"],
            strong_affix: &["ipaddr"],
            weak: &[],
        },
        PiiKind::Iban => Keywords {
            strong: &["iban"],
            strong_affix: &["iban"],
            weak: &["account", "acct", "bankaccount"],
        },
        PiiKind::PersonName => return person_name_hint(tokens),
    };
    let hint = |strength: Strength, keyword: &str| Hint {
        strength,
        label: keyword.to_owned(),
    };
    if let Some(keyword) = keywords.strong.iter().find(|k| has_token_run(tokens, k)) {
        return Some(hint(Strength::Strong, keyword));
    }
    if let Some(keyword) = keywords.strong_affix.iter().find(|k| has_affix(tokens, k)) {
        return Some(hint(Strength::Strong, keyword));
    }
    keywords
        .weak
        .iter()
        .find(|k| has_token_run(tokens, k))
        .map(|keyword| hint(Strength::Weak, keyword))
}

/// Words that, right before `name`, make it a person's name (`first_name`,
/// `customerName`, `account_holder_name`). `user` is deliberately absent: a
/// user name is an account handle.
const PERSON_QUALIFIERS: &[&str] = &[
    "first",
    "last",
    "full",
    "given",
    "family",
    "middle",
    "maiden",
    "legal",
    "customer",
    "client",
    "person",
    "contact",
    "owner",
    "employee",
    "patient",
    "member",
    "holder",
    "cardholder",
    "buyer",
    "sender",
    "recipient",
    "student",
    "driver",
    "passenger",
    "guest",
    "author",
    "applicant",
    "beneficiary",
    "payee",
    "payer",
    "traveler",
    "traveller",
    "parent",
    "guardian",
    "spouse",
    "manager",
    "tenant",
    "borrower",
];

/// The person-name hint: `surname`/`forename` or a qualified `name`
/// (strong), a bare leading `name` (weak), anything else (none).
fn person_name_hint(tokens: &[String]) -> Option<Hint> {
    let mut bare = None;
    for (i, token) in tokens.iter().enumerate() {
        let token = token.as_str();
        if matches!(token, "surname" | "surnames" | "forename" | "forenames") {
            return Some(Hint {
                strength: Strength::Strong,
                label: token.to_owned(),
            });
        }
        let qualifier = if matches!(token, "name" | "names") {
            if i == 0 {
                bare = Some(Hint {
                    strength: Strength::Weak,
                    label: "name".to_owned(),
                });
                continue;
            }
            tokens[i - 1].as_str()
        } else if let Some(prefix) = token.strip_suffix("name") {
            prefix
        } else {
            continue;
        };
        if PERSON_QUALIFIERS.contains(&qualifier) {
            return Some(Hint {
                strength: Strength::Strong,
                label: format!("{qualifier} name"),
            });
        }
    }
    bare
}

// ---------------------------------------------------------------------------
// Value validators
// ---------------------------------------------------------------------------

/// `local@domain.tld`: one `@`, a dot-atom local part, at least two domain
/// labels and an alphabetic (or punycode) top-level domain.
fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    if !local_ok || domain.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let Some(tld) = labels.last() else {
        return false;
    };
    labels.len() >= 2
        && labels.iter().all(|label| is_domain_label(label))
        && (tld.starts_with("xn--")
            || (tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic)))
}

/// One DNS label: 1–63 letters, digits or inner hyphens.
fn is_domain_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(|c| c.is_alphanumeric() || c == '-')
}

/// A phone number: `+` and 8–15 digits (separators allowed), or 7–15 digits
/// with separators (spaces, dashes, dots, one parenthesised group). Plain digit
/// strings count only when the column name hints at phones, so integer ids and
/// years never match; dates, decimals, SSNs, ZIP+4 codes, thousands-grouped
/// numbers and IPv4 addresses are rejected.
fn is_phone(value: &str, hinted: bool) -> bool {
    let (plus, body) = match value.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let chars_ok = body
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'));
    let ends_ok = body.starts_with(|c: char| c.is_ascii_digit() || c == '(')
        && body.ends_with(|c: char| c.is_ascii_digit());
    if !chars_ok || !ends_ok || !parentheses_ok(body) {
        return false;
    }
    // Between two digit groups: at most one separator besides parentheses.
    let separators_ok = body
        .split(|c: char| c.is_ascii_digit())
        .all(|run| run.chars().filter(|c| !matches!(c, '(' | ')')).count() <= 1);
    if !separators_ok {
        return false;
    }
    let groups: Vec<&str> = body
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    let digits: usize = groups.iter().map(|g| g.len()).sum();
    if plus {
        return (8..=15).contains(&digits);
    }
    if !(7..=15).contains(&digits) {
        return false;
    }
    if groups.len() == 1 {
        return hinted;
    }
    !looks_like_other_number(body, &groups)
}

/// At most one `(`, closed by a later `)`, with only digits between them.
fn parentheses_ok(body: &str) -> bool {
    match (body.find('('), body.find(')')) {
        (None, None) => true,
        (Some(open), Some(close)) => {
            open < close
                && body.matches('(').count() == 1
                && body.matches(')').count() == 1
                && close > open + 1
                && body[open + 1..close].bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

/// Separated digit strings that are something other than a phone number:
/// a decimal (`1234567.89`), a date (`2024-01-31`, `31.01.2024`), an SSN
/// (`123-45-6789`), a ZIP+4 code (`12345-6789`), a thousands-grouped number
/// (`12 345 678`) or an IPv4 address.
fn looks_like_other_number(body: &str, groups: &[&str]) -> bool {
    let separators: Vec<char> = body.chars().filter(|c| !c.is_ascii_digit()).collect();
    let uniform = separators.windows(2).all(|w| w[0] == w[1]);
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let decimal = separators == ['.'];
    let date = uniform && matches!(lengths.as_slice(), [4, 2, 2] | [2, 2, 4]);
    let ssn = separators == ['-', '-'] && lengths == [3, 2, 4];
    let zip_plus_four = separators == ['-'] && lengths == [5, 4];
    let thousands = uniform
        && separators.first().is_some_and(|&c| c == '.' || c == ' ')
        && lengths.len() >= 3
        && (1..=2).contains(&lengths[0])
        && lengths[1..].iter().all(|&l| l == 3);
    decimal || date || ssn || zip_plus_four || thousands || body.parse::<Ipv4Addr>().is_ok()
}

/// A card number: 13–19 digits, single spaces or dashes between them, not all
/// zeros, Luhn-valid. Scores 1 with a well-known issuer prefix (Visa 4,
/// Mastercard 51–55 and 2221–2720, Amex 34/37, Discover 6011/65), else
/// [`UNKNOWN_ISSUER_WEIGHT`]; 0 when not a card number.
fn card_score(value: &str) -> f64 {
    if !value.starts_with(|c: char| c.is_ascii_digit())
        || !value.ends_with(|c: char| c.is_ascii_digit())
    {
        return 0.0;
    }
    let mut digits: Vec<u32> = Vec::with_capacity(19);
    let mut after_separator = false;
    for c in value.chars() {
        if let Some(d) = c.to_digit(10) {
            digits.push(d);
            after_separator = false;
        } else if matches!(c, ' ' | '-') && !after_separator {
            after_separator = true;
        } else {
            return 0.0;
        }
    }
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&d| d == 0) || !luhn_valid(&digits)
    {
        return 0.0;
    }
    let prefix = |len: usize| digits[..len].iter().fold(0, |acc, &d| acc * 10 + d);
    let (p2, p4) = (prefix(2), prefix(4));
    let known = digits[0] == 4
        || (51..=55).contains(&p2)
        || (2221..=2720).contains(&p4)
        || p2 == 34
        || p2 == 37
        || p4 == 6011
        || p2 == 65;
    if known { 1.0 } else { UNKNOWN_ISSUER_WEIGHT }
}

/// The Luhn (mod 10) check over decimal digits, check digit last.
fn luhn_valid(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A US social security number `ddd-dd-dddd` (or, when the column name hints
/// at national ids, 9 plain digits): area not 000, 666 or 9xx, group not 00,
/// serial not 0000.
fn is_ssn(value: &str, hinted: bool) -> bool {
    let b = value.as_bytes();
    let parts: [&[u8]; 3] = if b.len() == 11 && b[3] == b'-' && b[6] == b'-' {
        [&b[..3], &b[4..6], &b[7..]]
    } else if hinted && b.len() == 9 {
        [&b[..3], &b[3..5], &b[5..]]
    } else {
        return false;
    };
    let [area, group, serial] = parts;
    parts.iter().all(|p| p.iter().all(u8::is_ascii_digit))
        && area != b"000"
        && area != b"666"
        && area[0] != b'9'
        && group != b"00"
        && serial != b"0000"
}

/// An IBAN (ISO 13616): 2 letters, 2 check digits, 11–30 alphanumerics, spaces
/// allowed, case-insensitive, and the mod-97 remainder of the rearranged
/// number is 1.
fn is_iban(value: &str) -> bool {
    let compact: Vec<u8> = value
        .bytes()
        .filter(|&b| b != b' ')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if !(15..=34).contains(&compact.len())
        || !compact[..2].iter().all(u8::is_ascii_uppercase)
        || !compact[2..4].iter().all(u8::is_ascii_digit)
        || !compact[4..].iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let remainder = compact[4..]
        .iter()
        .chain(&compact[..4])
        .fold(0u32, |acc, &b| {
            if b.is_ascii_digit() {
                (acc * 10 + u32::from(b - b'0')) % 97
            } else {
                (acc * 100 + u32::from(b - b'A') + 10) % 97
            }
        });
    remainder == 1
}

/// Lower-case particles allowed inside a name (`Ludwig van Beethoven`).
const NAME_PARTICLES: &[&str] = &[
    "van", "von", "der", "den", "de", "da", "di", "du", "del", "della", "des", "la", "le", "bin",
    "ibn", "al", "el", "y", "dos", "das",
];

/// 1–4 words, each capitalised (or a lower-case particle like `van`), made of
/// letters with inner apostrophes or hyphens, or an initial like `J.`; no
/// digits.
fn is_person_name(value: &str) -> bool {
    let words: Vec<&str> = value.split_whitespace().collect();
    (1..=4).contains(&words.len())
        && words.iter().any(|w| is_capitalised_word(w))
        && words
            .iter()
            .all(|w| is_capitalised_word(w) || NAME_PARTICLES.contains(w))
}

/// `Alice`, `O'Brien`, `Jean-Luc`, `Zoë`, `J.`.
fn is_capitalised_word(word: &str) -> bool {
    let mut chars = word.chars();
    if !chars.next().is_some_and(char::is_uppercase) {
        return false;
    }
    chars.as_str() == "."
        || word
            .split(['-', '\'', '\u{2019}'])
            .all(|part| !part.is_empty() && part.chars().all(char::is_alphabetic))
}
