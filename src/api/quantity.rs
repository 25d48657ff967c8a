//! Kubernetes quantities (`500m`, `64Mi`, `1e3`) turned into the units Docker takes.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Bytes meant by a memory quantity, rounded up; `None` when it is not a quantity.
pub fn parse_memory_bytes(quantity: &Quantity) -> Option<i64> {
    to_integer(parse(&quantity.0, 0)?)
}

/// Billionths of a CPU meant by a CPU quantity, rounded up; `None` when it is not a quantity.
pub fn parse_cpu_nanos(quantity: &Quantity) -> Option<i64> {
    to_integer(parse(&quantity.0, 9)?)
}

fn to_integer(value: f64) -> Option<i64> {
    (value.is_finite() && value >= 0.0 && value < i64::MAX as f64).then(|| value.ceil() as i64)
}

/// The amount a quantity means, in units of `10^-unit_exponent`.
///
/// The digits are read as one whole number and scaled by a single multiplication or division
/// by a power of ten, then by a power of 1024, which is exact. So a quantity that means a whole
/// number of units gets exactly that number (up to 2^53): multiplying by an inexact `1e-3`
/// first would turn `9m` into 9000001 nanos, and `ceil` would keep the error.
fn parse(text: &str, unit_exponent: i32) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (ten, binary) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 1),
        "Mi" => (0, 2),
        "Gi" => (0, 3),
        "Ti" => (0, 4),
        "Pi" => (0, 5),
        "Ei" => (0, 6),
        exponent if exponent.starts_with(['e', 'E']) => (exponent[1..].parse().ok()?, 0),
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: f64 = format!("{whole}{fraction}").parse().ok()?;
    let scale = i64::from(ten) + i64::from(unit_exponent) - i64::try_from(fraction.len()).ok()?;
    // Past 10^400 a float is infinite and its inverse 0, so larger powers change nothing.
    let power = 10f64.powi(scale.unsigned_abs().min(400) as i32);
    let scaled = if scale >= 0 {
        digits * power
    } else {
        digits / power
    };
    Some(scaled * 1024f64.powi(binary))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity(text.to_string())
    }

    #[test]
    fn memory_in_binary_and_decimal_suffixes() {
        assert_eq!(parse_memory_bytes(&q("64Mi")), Some(64 * 1024 * 1024));
        assert_eq!(parse_memory_bytes(&q("1Gi")), Some(1 << 30));
        assert_eq!(parse_memory_bytes(&q("128M")), Some(128_000_000));
        assert_eq!(parse_memory_bytes(&q("1e3")), Some(1000));
        assert_eq!(parse_memory_bytes(&q("1048576")), Some(1_048_576));
    }

    #[test]
    fn cpu_in_millicores_and_cores() {
        assert_eq!(parse_cpu_nanos(&q("500m")), Some(500_000_000));
        assert_eq!(parse_cpu_nanos(&q("2")), Some(2_000_000_000));
        assert_eq!(parse_cpu_nanos(&q("0.25")), Some(250_000_000));
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        assert_eq!(parse_memory_bytes(&q("lots")), None);
        assert_eq!(parse_memory_bytes(&q("12Qi")), None);
        assert_eq!(parse_memory_bytes(&q("-1Mi")), None);
        assert_eq!(parse_cpu_nanos(&q("")), None);
        assert_eq!(parse_memory_bytes(&q("1.2.3Mi")), None);
        assert_eq!(parse_memory_bytes(&q(".+0Mi")), None);
        assert_eq!(parse_memory_bytes(&q("1e400")), None);
    }

    #[test]
    fn whole_amounts_are_exact() {
        // Found by the properties below: scaling by an inexact 1e-3 and rounding up added one.
        assert_eq!(parse_cpu_nanos(&q("9m")), Some(9_000_000));
        assert_eq!(parse_cpu_nanos(&q("13m")), Some(13_000_000));
        assert_eq!(
            parse_cpu_nanos(&q("8534577.96")),
            Some(8_534_577_960_000_000)
        );
        assert_eq!(
            parse_memory_bytes(&q("2783543.72e7")),
            Some(27_835_437_200_000)
        );
        assert_eq!(parse_memory_bytes(&q("1.5Gi")), Some(3 << 29));
        assert_eq!(parse_memory_bytes(&q("0.5")), Some(1));
    }

    #[test]
    fn extreme_exponents_are_refused_or_vanish() {
        assert_eq!(parse_memory_bytes(&q("1e2147483647")), None);
        assert_eq!(parse_memory_bytes(&q("1e-2147483648")), Some(0));
        assert_eq!(parse_cpu_nanos(&q("1e-2147483648")), Some(0));
        assert_eq!(parse_memory_bytes(&q("1e2147483648")), None);
    }

    /// What a generated quantity means, worked out in integers, away from the parser's floats.
    #[derive(Debug)]
    struct Meaning {
        /// The quantity as written.
        text: String,
        /// `digits × 10^exponent × 1024^binary` in the unit asked for, as a fraction.
        numerator: u128,
        denominator: u128,
    }

    impl Meaning {
        fn ceil(&self) -> u128 {
            self.numerator.div_ceil(self.denominator)
        }

        fn is_whole(&self) -> bool {
            self.numerator.is_multiple_of(self.denominator)
        }
    }

    /// Suffixes as `(suffix, power of ten, power of 1024)`.
    const SUFFIXES: [(&str, i32, u32); 16] = [
        ("", 0, 0),
        ("n", -9, 0),
        ("u", -6, 0),
        ("m", -3, 0),
        ("k", 3, 0),
        ("M", 6, 0),
        ("G", 9, 0),
        ("T", 12, 0),
        ("P", 15, 0),
        ("E", 18, 0),
        ("Ki", 0, 1),
        ("Mi", 0, 2),
        ("Gi", 0, 3),
        ("Ti", 0, 4),
        ("Pi", 0, 5),
        ("Ei", 0, 6),
    ];

    /// A well-formed quantity (up to 9 digits, up to 3 of them after the point, any suffix or
    /// a decimal exponent) and what it means in units of `10^unit`: 0 for bytes, -9 for nanos.
    fn quantity(unit: i32) -> impl Strategy<Value = Meaning> {
        let suffix = prop_oneof![
            proptest::sample::select(&SUFFIXES[..]).prop_map(|(s, ten, bin)| (
                s.to_string(),
                ten,
                bin
            )),
            (prop_oneof![Just('e'), Just('E')], -9i32..=18).prop_map(|(e, ten)| (
                format!("{e}{ten}"),
                ten,
                0
            )),
        ];
        (0u64..1_000_000_000, 0usize..=3, suffix, any::<bool>()).prop_map(
            move |(digits, fraction, (suffix, ten, binary), plus)| {
                let padded = format!("{digits:0>width$}", width = fraction + 1);
                let (whole, part) = padded.split_at(padded.len() - fraction);
                let number = if part.is_empty() {
                    whole.to_string()
                } else {
                    format!("{whole}.{part}")
                };
                let sign = if plus { "+" } else { "" };
                let exponent = ten - unit - fraction as i32;
                let mut numerator = u128::from(digits) * 1024u128.pow(binary);
                let mut denominator = 1;
                if exponent >= 0 {
                    numerator *= 10u128.pow(exponent.unsigned_abs());
                } else {
                    denominator = 10u128.pow(exponent.unsigned_abs());
                }
                Meaning {
                    text: format!("{sign}{number}{suffix}"),
                    numerator,
                    denominator,
                }
            },
        )
    }

    /// Checks a parsed amount against what the quantity means: exact when it is a whole number
    /// that a float holds exactly, otherwise rounded up within a float's precision; `None` once
    /// it cannot be an i64.
    fn check(parsed: Option<i64>, meaning: &Meaning) -> Result<(), TestCaseError> {
        let expected = meaning.ceil();
        if expected > 1 << 64 {
            prop_assert_eq!(parsed, None, "{} is beyond an i64", meaning.text);
            return Ok(());
        }
        if expected >= 1 << 62 {
            // Near i64::MAX the float's rounding decides; only a panic would be wrong.
            return Ok(());
        }
        let Some(parsed) = parsed else {
            return Err(TestCaseError::fail(format!("{} was refused", meaning.text)));
        };
        let parsed = u128::try_from(parsed).map_err(|_| TestCaseError::fail("negative"))?;
        if expected <= 1 << 53 && meaning.is_whole() {
            prop_assert_eq!(parsed, expected, "{} is a whole number", meaning.text);
        } else {
            let tolerance = 1 + expected / (1 << 50);
            prop_assert!(
                parsed.abs_diff(expected) <= tolerance,
                "{} gave {parsed}, expected about {expected}",
                meaning.text
            );
        }
        Ok(())
    }

    /// The grammar of a quantity's number: an optional sign, digits, at most one point.
    fn is_number(text: &str) -> bool {
        let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        !(whole.is_empty() && fraction.is_empty())
            && whole.chars().all(|c| c.is_ascii_digit())
            && fraction.chars().all(|c| c.is_ascii_digit())
    }

    proptest! {
        #[test]
        fn no_text_panics(text in prop_oneof![
            any::<String>(),
            "[-+. 0-9eEkKMGTPinum]{0,16}",
            "[-+]?[0-9.]{0,6}[eE][-+]?[0-9]{1,12}",
        ]) {
            let _ = parse_memory_bytes(&q(&text));
            let _ = parse_cpu_nanos(&q(&text));
        }

        #[test]
        fn memory_is_the_bytes_the_quantity_means(meaning in quantity(0)) {
            check(parse_memory_bytes(&q(&meaning.text)), &meaning)?;
        }

        #[test]
        fn cpu_is_the_nanos_the_quantity_means(meaning in quantity(-9)) {
            check(parse_cpu_nanos(&q(&meaning.text)), &meaning)?;
        }

        #[test]
        fn negative_quantities_are_refused(meaning in quantity(0)) {
            prop_assume!(meaning.numerator > 0);
            let negative = format!("-{}", meaning.text.trim_start_matches('+'));
            prop_assert_eq!(parse_memory_bytes(&q(&negative)), None);
            prop_assert_eq!(parse_cpu_nanos(&q(&negative)), None);
        }

        #[test]
        fn text_without_digits_is_refused(text in "[^0-9]*") {
            prop_assert_eq!(parse_memory_bytes(&q(&text)), None);
            prop_assert_eq!(parse_cpu_nanos(&q(&text)), None);
        }

        #[test]
        fn unknown_suffixes_are_refused(
            meaning in quantity(0),
            junk in "[a-zA-Z!%_/]{1,3}",
        ) {
            let text = format!("{}{junk}", meaning.text);
            let suffix = text.trim_start_matches(|c: char| c.is_ascii_digit() || "+-.".contains(c));
            prop_assume!(!SUFFIXES.iter().any(|(known, _, _)| *known == suffix));
            prop_assume!(!(suffix.starts_with(['e', 'E']) && suffix[1..].parse::<i32>().is_ok()));
            prop_assert_eq!(parse_memory_bytes(&q(&text)), None, "{}", text);
        }

        #[test]
        fn only_numbers_of_the_grammar_are_taken(number in "[-+.0-9]{1,8}") {
            let negative = number.starts_with('-') && number.contains(|c: char| ('1'..='9').contains(&c));
            let taken = parse_memory_bytes(&q(&format!("{number}Mi"))).is_some();
            prop_assert_eq!(taken, is_number(&number) && !negative, "{}Mi", number);
        }
    }
}
