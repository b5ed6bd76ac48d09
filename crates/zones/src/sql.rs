//! Writing SQL text: identifiers and literals from configuration values.

/// `name` as a quoted SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as an SQL string literal.
pub fn string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A JSON scalar from the config as an SQL literal.
pub fn literal(v: &serde_json::Value) -> Result<String, String> {
    match v {
        serde_json::Value::String(s) => Ok(string(s)),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected a string, number or boolean, not {other}")),
    }
}
