//! CEL rules the API server enforces beyond what the field types and bounds say.

use schemars::Schema;
use serde_json::{Value, json};

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
                "rule": "!has(self.cpu) || (isQuantity(string(self.cpu)) && quantity(string(self.cpu)).isGreaterThan(quantity('0')) && quantity(string(self.cpu)).compareTo(quantity('1024')) <= 0)",
                "message": "cpu must be a quantity above 0 and at most 1024, such as 500m or 2",
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
