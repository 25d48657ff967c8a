//! Kubernetes quantities (`500m`, `64Mi`, `1e3`) turned into the units Docker takes.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Bytes meant by a memory quantity, rounded up; `None` when it is not a quantity.
pub fn parse_memory_bytes(quantity: &Quantity) -> Option<i64> {
    to_integer(parse(&quantity.0)?)
}

/// Billionths of a CPU meant by a CPU quantity, rounded up; `None` when it is not a quantity.
pub fn parse_cpu_nanos(quantity: &Quantity) -> Option<i64> {
    to_integer(parse(&quantity.0)? * 1e9)
}

fn to_integer(value: f64) -> Option<i64> {
    (value.is_finite() && value >= 0.0 && value < i64::MAX as f64).then(|| value.ceil() as i64)
}

fn parse(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => 10f64.powi(exponent[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * multiplier)
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
    }
}
