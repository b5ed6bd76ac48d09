//! PII auto-classification: every kind from realistic samples, from values
//! alone, and the look-alikes that must not be classified.

use tarn_governance::classify::{PiiKind, classify_column};

// ---------------------------------------------------------------------------
// Deterministic sample generators
// ---------------------------------------------------------------------------

const N: usize = 50;

fn refs(values: &[String]) -> Vec<&str> {
    values.iter().map(String::as_str).collect()
}

/// The Luhn check digit that makes `partial` followed by it valid.
fn luhn_check_digit(partial: &str) -> u32 {
    let sum: u32 = partial
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).expect("digit");
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// 16-digit Visa-prefixed numbers, Luhn-valid.
fn visa_cards() -> Vec<String> {
    (0..N)
        .map(|i| {
            let partial = format!("4{:014}", 1_234_567 + i * 7919);
            format!("{partial}{}", luhn_check_digit(&partial))
        })
        .collect()
}

/// The same numbers with a wrong check digit.
fn luhn_failing_cards() -> Vec<String> {
    (0..N)
        .map(|i| {
            let partial = format!("4{:014}", 1_234_567 + i * 7919);
            format!("{partial}{}", (luhn_check_digit(&partial) + 1) % 10)
        })
        .collect()
}

/// Groups `s` in blocks of four separated by `sep`, as printed on cards and IBANs.
fn grouped(s: &str, sep: char) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

/// Mod 97 of an alphanumeric string, letters as 10..=35 (ISO 13616).
fn mod97(s: &str) -> u32 {
    s.chars().fold(0, |acc, c| {
        let v = c.to_digit(36).expect("alphanumeric");
        if v < 10 {
            (acc * 10 + v) % 97
        } else {
            (acc * 100 + v) % 97
        }
    })
}

/// The IBAN check digits for `country` and `bban`.
fn iban_check(country: &str, bban: &str) -> u32 {
    98 - mod97(&format!("{bban}{country}00"))
}

/// Valid German and British IBANs, alternating.
fn ibans() -> Vec<String> {
    (0..N)
        .map(|i| {
            let (country, bban) = if i % 2 == 0 {
                ("DE", format!("37040044{:010}", 532_013_000 + i))
            } else {
                ("GB", format!("WEST123456{:08}", 98_765_432 + i))
            };
            format!("{country}{:02}{bban}", iban_check(country, &bban))
        })
        .collect()
}

/// The same IBANs with check digits off by one.
fn invalid_ibans() -> Vec<String> {
    (0..N)
        .map(|i| {
            let bban = format!("37040044{:010}", 532_013_000 + i);
            format!("DE{:02}{bban}", iban_check("DE", &bban) + 1)
        })
        .collect()
}

fn emails() -> Vec<String> {
    (0..N)
        .map(|i| format!("user{i}.test@example{}.com", i % 7))
        .collect()
}

fn e164_phones() -> Vec<String> {
    (0..N)
        .map(|i| format!("+1 415-555-{:04}", 100 + i))
        .collect()
}

fn national_phones() -> Vec<String> {
    (0..N)
        .map(|i| format!("(212) 555-{:04}", 2000 + i * 3))
        .collect()
}

fn ssns() -> Vec<String> {
    (0..N)
        .map(|i| format!("{:03}-{:02}-{:04}", 100 + i, 10 + i % 80, 1000 + i * 37))
        .collect()
}

fn plain_ssns() -> Vec<String> {
    ssns().iter().map(|s| s.replace('-', "")).collect()
}

fn ipv4s() -> Vec<String> {
    (0..N)
        .map(|i| format!("10.{}.{}.{}", i % 256, (i * 7) % 256, (i * 13) % 250 + 1))
        .collect()
}

fn ipv6s() -> Vec<String> {
    (0..N)
        .map(|i| format!("2001:db8::{:x}", 0x100 + i))
        .collect()
}

const FIRST_NAMES: [&str; 10] = [
    "Alice", "Bruno", "Chloé", "Dmitri", "Élodie", "Fatima", "Giovanni", "Hannah", "Ingrid", "José",
];
const LAST_NAMES: [&str; 10] = [
    "Martin",
    "O'Brien",
    "García-López",
    "Nguyen",
    "Müller",
    "van der Berg",
    "Kowalski",
    "Dubois",
    "Okafor",
    "Smith",
];

fn first_names() -> Vec<String> {
    (0..N).map(|i| FIRST_NAMES[i % 10].to_owned()).collect()
}

fn last_names() -> Vec<String> {
    (0..N)
        .map(|i| LAST_NAMES[(i * 3) % 10].to_owned())
        .collect()
}

fn full_names() -> Vec<String> {
    (0..N)
        .map(|i| format!("{} {}", FIRST_NAMES[i % 10], LAST_NAMES[(i * 7) % 10]))
        .collect()
}

// ---------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------

/// Classifies and asserts `kind` with confidence at least `min`, the column
/// name echoed and no sampled value in the evidence.
#[track_caller]
fn assert_detects(name: &str, samples: &[String], kind: PiiKind, min: f64) {
    let detection = classify_column(name, &refs(samples))
        .unwrap_or_else(|| panic!("`{name}` should be classified as {kind:?}"));
    assert_eq!(detection.kind, kind, "`{name}`: {detection:?}");
    assert_eq!(detection.column, name);
    assert!(
        (min..=1.0).contains(&detection.confidence),
        "`{name}`: confidence {} below {min}: {detection:?}",
        detection.confidence
    );
    assert_no_values_in_evidence(&detection.evidence, samples);
}

#[track_caller]
fn assert_none(name: &str, samples: &[String]) {
    let detection = classify_column(name, &refs(samples));
    assert!(
        detection.is_none(),
        "`{name}` should not be classified: {detection:?}"
    );
}

#[track_caller]
fn assert_no_values_in_evidence(evidence: &str, samples: &[String]) {
    for sample in samples {
        assert!(
            !evidence.contains(sample.as_str()),
            "evidence leaks a sampled value: {evidence}"
        );
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn tags_and_serialization() {
    let tags: Vec<&str> = PiiKind::ALL.iter().map(|k| k.tag()).collect();
    assert_eq!(
        tags,
        [
            "pii:email",
            "pii:phone",
            "pii:credit_card",
            "pii:national_id",
            "pii:ip_address",
            "pii:iban",
            "pii:person_name",
        ]
    );
    assert_eq!(
        serde_json::to_string(&PiiKind::CreditCard).unwrap(),
        "\"credit_card\""
    );
    let back: PiiKind = serde_json::from_str("\"ip_address\"").unwrap();
    assert_eq!(back, PiiKind::IpAddress);
}

#[test]
fn every_kind_is_detected_with_a_matching_name() {
    let spaced_cards: Vec<String> = visa_cards().iter().map(|c| grouped(c, ' ')).collect();
    let dashed_cards: Vec<String> = visa_cards().iter().map(|c| grouped(c, '-')).collect();
    let spaced_ibans: Vec<String> = ibans().iter().map(|c| grouped(c, ' ')).collect();
    let cases: Vec<(&str, Vec<String>, PiiKind)> = vec![
        ("email", emails(), PiiKind::Email),
        ("customerEmail", emails(), PiiKind::Email),
        ("e-mail", emails(), PiiKind::Email),
        ("phone_number", e164_phones(), PiiKind::Phone),
        ("mobile", national_phones(), PiiKind::Phone),
        ("card_number", visa_cards(), PiiKind::CreditCard),
        ("cc_num", spaced_cards, PiiKind::CreditCard),
        ("creditCard", dashed_cards, PiiKind::CreditCard),
        ("ssn", ssns(), PiiKind::NationalId),
        ("tax_id", plain_ssns(), PiiKind::NationalId),
        ("national_id_number", plain_ssns(), PiiKind::NationalId),
        ("client_ip", ipv4s(), PiiKind::IpAddress),
        ("clientIPAddress", ipv4s(), PiiKind::IpAddress),
        ("ip_addr", ipv6s(), PiiKind::IpAddress),
        ("iban", ibans(), PiiKind::Iban),
        ("payer_account", spaced_ibans, PiiKind::Iban),
        ("first_name", first_names(), PiiKind::PersonName),
        ("surname", last_names(), PiiKind::PersonName),
        ("customerFullName", full_names(), PiiKind::PersonName),
        ("contact_name", full_names(), PiiKind::PersonName),
    ];
    for (name, samples, kind) in &cases {
        assert_detects(name, samples, *kind, 0.9);
    }
    // A bare `name` is as often a product or a place: detected, but below
    // the confidence at which a tag drives masking without review.
    let bare = classify_column("name", &refs(&full_names())).unwrap();
    assert_eq!(bare.kind, PiiKind::PersonName);
    assert!((0.5..0.8).contains(&bare.confidence), "{bare:?}");
}

#[test]
fn evidence_names_the_counts_and_the_keyword() {
    let detection = classify_column("email", &refs(&emails())).unwrap();
    assert_eq!(detection.confidence, 1.0);
    assert!(
        detection
            .evidence
            .contains("50 of 50 sampled values are email addresses"),
        "{}",
        detection.evidence
    );
    assert!(
        detection.evidence.contains("`email`"),
        "{}",
        detection.evidence
    );
}

#[test]
fn neutral_names_are_classified_from_values_alone() {
    let fixed_cards: Vec<String> = (0..N)
        .map(|i| {
            [
                "4111111111111111",
                "5500005555555559",
                "378282246310005",
                "6011111111111117",
            ][i % 4]
                .to_owned()
        })
        .collect();
    let fixed_ibans: Vec<String> = (0..N)
        .map(|i| {
            [
                "GB82WEST12345698765432",
                "DE89370400440532013000",
                "FR1420041010050500013M02606",
                "GB82 WEST 1234 5698 7654 32",
            ][i % 4]
                .to_owned()
        })
        .collect();
    let cases: Vec<(Vec<String>, PiiKind)> = vec![
        (emails(), PiiKind::Email),
        (visa_cards(), PiiKind::CreditCard),
        (fixed_cards, PiiKind::CreditCard),
        (ibans(), PiiKind::Iban),
        (fixed_ibans, PiiKind::Iban),
        (ipv4s(), PiiKind::IpAddress),
        (ipv6s(), PiiKind::IpAddress),
        (ssns(), PiiKind::NationalId),
        (e164_phones(), PiiKind::Phone),
    ];
    for (samples, kind) in &cases {
        assert_detects("c1", samples, *kind, 0.9);
    }
}

#[test]
fn a_luhn_valid_sixteen_digit_number_is_a_card_not_a_phone() {
    assert_detects("phone", &visa_cards(), PiiKind::CreditCard, 0.9);
    // Luhn-valid without a well-known issuer prefix: still a card, lower confidence.
    let unknown_issuer: Vec<String> = (0..N)
        .map(|i| {
            let partial = format!("9{:014}", i * 104_729);
            format!("{partial}{}", luhn_check_digit(&partial))
        })
        .collect();
    let detection = classify_column("c1", &refs(&unknown_issuer)).unwrap();
    assert_eq!(detection.kind, PiiKind::CreditCard);
    assert!(detection.confidence < 0.9, "{detection:?}");
}

#[test]
fn luhn_failing_numbers_are_not_cards() {
    assert_none("c1", &luhn_failing_cards());
    assert_none("card_number", &luhn_failing_cards());
}

#[test]
fn a_bad_iban_checksum_is_not_an_iban() {
    assert_none("c1", &invalid_ibans());
    assert_none("iban", &invalid_ibans());
}

#[test]
fn plain_nine_digits_need_a_national_id_name() {
    assert_none("c1", &plain_ssns());
}

#[test]
fn plain_digit_phones_need_a_phone_name() {
    let plain: Vec<String> = (0..N).map(|i| format!("415555{:04}", 100 + i)).collect();
    assert_detects("telephone", &plain, PiiKind::Phone, 0.9);
    assert_none("c1", &plain);
}

#[test]
fn integer_ids_years_dates_and_amounts_are_not_pii() {
    let ids: Vec<String> = (1..=100).map(|i: u32| i.to_string()).collect();
    let big_ids: Vec<String> = (0..N).map(|i| (1_000_000 + i * 37).to_string()).collect();
    let years: Vec<String> = (0..N).map(|i| (1975 + i).to_string()).collect();
    let dates: Vec<String> = (0..N)
        .map(|i| format!("2024-{:02}-{:02}", i % 12 + 1, i % 28 + 1))
        .collect();
    let european_dates: Vec<String> = (0..N)
        .map(|i| format!("{:02}.{:02}.2024", i % 28 + 1, i % 12 + 1))
        .collect();
    let amounts: Vec<String> = (0..N)
        .map(|i| format!("{}.{:02}", 1_000_000 + i * 991, i % 100))
        .collect();
    for name in ["id", "c1", "customer_id", "phone_count"] {
        assert_none(name, &ids);
    }
    assert_none("order_id", &big_ids);
    assert_none("c1", &big_ids);
    for name in ["year", "birth_year", "c1"] {
        assert_none(name, &years);
    }
    assert_none("created_at", &dates);
    assert_none("c1", &european_dates);
    assert_none("amount", &amounts);
}

#[test]
fn capitalised_words_without_a_person_name_are_not_person_names() {
    let products: Vec<String> = (0..N)
        .map(|i| {
            [
                "Deluxe Widget",
                "Garden Hose",
                "Espresso Machine",
                "Desk Lamp",
                "Yoga Mat",
            ][i % 5]
                .to_owned()
        })
        .collect();
    let countries: Vec<String> = (0..N)
        .map(|i| {
            [
                "France",
                "Germany",
                "United States",
                "Japan",
                "Brazil",
                "New Zealand",
            ][i % 6]
                .to_owned()
        })
        .collect();
    assert_none("product_name", &products);
    assert_none("country", &countries);
    assert_none("country_name", &countries);
    assert_none("company_name", &full_names());
    assert_none("file_name", &first_names());
    // A user name is an account handle, not a person's name.
    assert_none("username", &first_names());
    assert_none("user_name", &first_names());
    // Capitalised names without any hint from the column name.
    assert_none("c1", &full_names());
}

#[test]
fn names_alone_give_at_most_point_six() {
    for samples in [&[][..], &["", "  ", ""][..]] {
        let detection = classify_column("email", samples);
        assert!(
            detection
                .as_ref()
                .is_none_or(|d| d.kind == PiiKind::Email && d.confidence <= 0.6),
            "{detection:?}"
        );
    }
    // Values that contradict the name outweigh it.
    let flags: Vec<String> = (0..N).map(|i| (i % 2 == 0).to_string()).collect();
    assert_none("email_verified", &flags);
    assert_none("is_mobile", &flags);
}

#[test]
fn a_column_with_only_a_fifth_emails_is_not_classified() {
    let mixed: Vec<String> = (0..N)
        .map(|i| {
            if i % 5 == 0 {
                format!("someone{i}@example.org")
            } else {
                format!("free text note number {i}")
            }
        })
        .collect();
    assert_none("c1", &mixed);
    assert_none("notes", &mixed);
}

#[test]
fn evidence_never_contains_sampled_values() {
    let sets = [
        emails(),
        e164_phones(),
        national_phones(),
        visa_cards(),
        luhn_failing_cards(),
        ssns(),
        ipv4s(),
        ipv6s(),
        ibans(),
        invalid_ibans(),
        full_names(),
    ];
    for name in [
        "c1",
        "email",
        "phone",
        "card_number",
        "ssn",
        "ip",
        "iban",
        "full_name",
    ] {
        for samples in &sets {
            // Half the samples, so a detection can also mention mismatches.
            let few = &samples[..N / 2];
            if let Some(detection) = classify_column(name, &refs(few)) {
                assert_no_values_in_evidence(&detection.evidence, few);
            }
        }
    }
}
