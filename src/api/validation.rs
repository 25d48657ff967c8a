//! CEL rules the API server enforces beyond what the field types and bounds say.

use schemars::Schema;
use serde_json::{Value, json};

/// An image reference as Docker reads it: `[domain[:port]/]path[:tag][@algorithm:hex]`, the
/// path in lowercase components. References the daemon would refuse as malformed are refused
/// at admission instead.
pub const IMAGE_REFERENCE: &str = concat!(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?/)?",
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*",
    r"(?::[\w][\w.-]{0,127})?",
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$",
);

/// Makes the spec immutable after creation, except `cancel` going from false to true.
pub fn spec_rules(schema: &mut Schema) {
    let fields: Vec<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| {
            properties
                .keys()
                .filter(|k| *k != "cancel")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut rules: Vec<Value> = fields
        .iter()
        .map(|field| {
            json!({
                "rule": format!(
                    "has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field})"
                ),
                "message": format!("{field} cannot be changed after the TaskRun is created"),
                "fieldPath": format!(".{field}"),
            })
        })
        .collect();
    rules.push(json!({
        "rule": "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
        "message": "cancel cannot go back to false once it is true",
        "fieldPath": ".cancel",
    }));
    schema.insert("x-kubernetes-validations".into(), Value::Array(rules));
}

/// Requires the limits to be quantities Docker accepts.
pub fn limits_rules(schema: &mut Schema) {
    schema.insert(
        "x-kubernetes-validations".into(),
        json!([
            {
                "rule": "!has(self.cpu) || (isQuantity(string(self.cpu)) && quantity(string(self.cpu)).compareTo(quantity('10m')) >= 0 && quantity(string(self.cpu)).compareTo(quantity('1024')) <= 0)",
                "message": "cpu must be a quantity of at least 10m (the smallest limit Docker enforces) and at most 1024, such as 500m or 2",
                "fieldPath": ".cpu",
            },
            {
                "rule": "!has(self.memory) || (isQuantity(string(self.memory)) && quantity(string(self.memory)).compareTo(quantity('6Mi')) >= 0 && quantity(string(self.memory)).compareTo(quantity('1Pi')) <= 0)",
                "message": "memory must be a quantity of at least 6Mi, such as 64Mi or 1Gi",
                "fieldPath": ".memory",
            },
        ]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_docker_accepts_match_and_malformed_ones_do_not() {
        let pattern = regex::Regex::new(IMAGE_REFERENCE).unwrap();
        for good in [
            "busybox",
            "busybox:latest",
            "busybox:1.36.1-musl",
            "library/busybox",
            "registry.example.com/team/tool:v2",
            "localhost:5000/tool",
            "127.0.0.1:5000/a/b/c:tag_1",
            "my-registry:5000/some__name/x-y.z",
            "tool@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "tool:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Registry.Example.com/team/tool",
        ] {
            assert!(pattern.is_match(good), "{good} is a valid reference");
        }
        for bad in [
            "BusyBox:latest",
            "busybox:",
            "busybox@sha256:abc",
            "busybox@",
            "busybox:tag with space",
            "-busybox",
            "busybox//x",
            "busybox:-tag",
            "registry.example.com/Team/tool",
            ":latest",
        ] {
            assert!(!pattern.is_match(bad), "{bad} is malformed");
        }
    }
}
