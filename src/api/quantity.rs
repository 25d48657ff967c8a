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
        // Scaling by an inexact 1e-3 and then rounding up used to add one.
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
}
