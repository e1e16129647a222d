//! How an approver's edit of a call's params is checked before it runs ([`EditCheck`], set with
//! [`ToolCall::check_edits`](super::ToolCall::check_edits) and [`refuse_edits`](super::ToolCall::refuse_edits)).

use std::fmt;

use serde_json::Value;

/// How an edit of a call's params is checked (see [`ToolCall::check_edits`]).
#[derive(Clone)]
pub(crate) enum EditCheck {
    /// Any JSON object (`execute`'s contract).
    Object,
    /// The tool's own reader.
    Parse(fn(&Value) -> Result<(), String>),
    /// Not editable, and why.
    Refused(String),
}

impl fmt::Debug for EditCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditCheck::Object => f.write_str("Object"),
            EditCheck::Parse(_) => f.write_str("Parse"),
            EditCheck::Refused(why) => f.debug_tuple("Refused").field(why).finish(),
        }
    }
}

impl PartialEq for EditCheck {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (EditCheck::Object, EditCheck::Object) => true,
            (EditCheck::Parse(a), EditCheck::Parse(b)) => std::ptr::fn_addr_eq(*a, *b),
            (EditCheck::Refused(a), EditCheck::Refused(b)) => a == b,
            _ => false,
        }
    }
}

impl EditCheck {
    /// Why edits are refused, if they are.
    pub(crate) fn refused(&self) -> Option<&str> {
        match self {
            EditCheck::Refused(why) => Some(why),
            _ => None,
        }
    }

    /// Checks edited params: `Err` says why they cannot run.
    pub(crate) fn check(&self, params: &Value) -> Result<(), String> {
        match self {
            EditCheck::Refused(why) => Err(why.clone()),
            _ if !params.is_object() => Err(format!(
                "edited params must be a JSON object of the tool's arguments; got {}",
                match params {
                    Value::Null => "null",
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::String(_) => "a string",
                    Value::Array(_) => "an array",
                    Value::Object(_) => "an object",
                }
            )),
            EditCheck::Object => Ok(()),
            EditCheck::Parse(check) => check(params),
        }
    }
}
