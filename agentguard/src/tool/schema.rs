//! Tool definitions for the model (feature `schema`): what `#[derive(Tool)]` tells a model about each tool, in the
//! shapes the main model APIs take.

use serde_json::{json, Map, Value};

use crate::Risk;

/// What a model is told about one tool: its name, a description (the variant's doc comment), the JSON Schema of
/// its params (from the variant's fields, their doc comments and `#[serde(...)]` attributes, by schemars) and the
/// MCP annotations its risk gives.
///
/// Made by `#[derive(Tool)]` through [`ToolDefinitions::definitions`]; shown in each API's shape by
/// [`openai`](Self::openai), [`anthropic`](Self::anthropic) and [`mcp`](Self::mcp).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
    name: &'static str,
    description: String,
    parameters: Value,
    risk: Option<Risk>,
}

impl ToolDefinition {
    /// A definition from its parts. `parameters` is the params' JSON Schema (an object schema); `risk` is `None`
    /// for a tool that is not gated (read-only).
    pub fn new(name: &'static str, description: impl Into<String>, parameters: Value, risk: Option<Risk>) -> Self {
        ToolDefinition {
            name,
            description: description.into(),
            parameters,
            risk,
        }
    }

    /// The tool's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The tool's description: the variant's doc comment (empty without one).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The JSON Schema (draft 2020-12) of the tool's params: an object with one property per field, described by the
    /// field's doc comment; `additionalProperties` is `false`, since unknown fields are refused.
    pub fn parameters(&self) -> &Value {
        &self.parameters
    }

    /// The risk the declaration or the name gives the tool; `None` for a tool that is not gated.
    pub fn risk(&self) -> Option<Risk> {
        self.risk
    }

    /// MCP tool annotations from the risk, as the rmcp adapter advertises a tool from the guard's view: a tool that
    /// is not gated is `readOnlyHint: true`, `destructiveHint: false`; a gated one is `readOnlyHint: false`,
    /// `destructiveHint: true` (MCP's own default, and what makes a client ask). `openWorldHint` is `true` for a tool
    /// that sends something out ([`Risk::ExternalSend`]).
    pub fn annotations(&self) -> Value {
        let mut annotations = Map::new();
        let gated = self.risk.is_some();
        annotations.insert("readOnlyHint".into(), Value::Bool(!gated));
        annotations.insert("destructiveHint".into(), Value::Bool(gated));
        if self.risk == Some(Risk::ExternalSend) {
            annotations.insert("openWorldHint".into(), Value::Bool(true));
        }
        Value::Object(annotations)
    }

    /// An OpenAI function tool (Chat Completions `tools`):
    /// `{"type": "function", "function": {"name", "description", "parameters"}}`.
    pub fn openai(&self) -> Value {
        json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        })
    }

    /// An Anthropic tool (Messages API `tools`): `{"name", "description", "input_schema"}`.
    pub fn anthropic(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "input_schema": self.parameters,
        })
    }

    /// An MCP `Tool` (`tools/list`): `{"name", "description", "inputSchema", "annotations"}`.
    pub fn mcp(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "inputSchema": self.parameters,
            "annotations": self.annotations(),
        })
    }
}

/// Every tool of a [`Tool`](crate::Tool) enum, as [`ToolDefinitions::definitions`] returns them, in declaration
/// order; each API's shape of the whole list is one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Definitions(Vec<ToolDefinition>);

impl Definitions {
    /// The definitions, in declaration order.
    pub fn new(definitions: Vec<ToolDefinition>) -> Self {
        Definitions(definitions)
    }

    /// The definition of the tool named `name`.
    pub fn get(&self, name: &str) -> Option<&ToolDefinition> {
        self.0.iter().find(|d| d.name == name)
    }

    /// The definitions, in declaration order.
    pub fn iter(&self) -> std::slice::Iter<'_, ToolDefinition> {
        self.0.iter()
    }

    /// How many tools.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `tools` array of an OpenAI Chat Completions request ([`ToolDefinition::openai`] of each).
    pub fn openai(&self) -> Value {
        Value::Array(self.0.iter().map(ToolDefinition::openai).collect())
    }

    /// The `tools` array of an Anthropic Messages request ([`ToolDefinition::anthropic`] of each).
    pub fn anthropic(&self) -> Value {
        Value::Array(self.0.iter().map(ToolDefinition::anthropic).collect())
    }

    /// The `tools` array of an MCP `tools/list` result ([`ToolDefinition::mcp`] of each).
    pub fn mcp(&self) -> Value {
        Value::Array(self.0.iter().map(ToolDefinition::mcp).collect())
    }
}

impl<'a> IntoIterator for &'a Definitions {
    type Item = &'a ToolDefinition;
    type IntoIter = std::slice::Iter<'a, ToolDefinition>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for Definitions {
    type Item = ToolDefinition;
    type IntoIter = std::vec::IntoIter<ToolDefinition>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The tool definitions of a [`Tool`](crate::Tool) enum: `#[derive(Tool)]` implements it for an enum marked
/// `#[tool(schema)]` (which needs agentguard's `schema` feature; every field type must implement
/// `schemars::JsonSchema`). An opt-in per enum, so that turning the feature on for one crate never asks another
/// crate's tool enums for schemas.
///
/// ```
/// # #[cfg(feature = "schema")] {
/// use agentguard::tool::ToolDefinitions;
///
/// #[derive(agentguard::Tool)]
/// #[tool(schema)]
/// enum Tools {
///     /// Look a customer up.
///     ReadCustomer {
///         /// The customer's id.
///         id: u64,
///     },
/// }
///
/// let tools = Tools::definitions();
/// assert_eq!(tools.openai()[0]["function"]["name"], "read_customer");
/// assert_eq!(tools.anthropic()[0]["input_schema"]["properties"]["id"]["description"], "The customer's id.");
/// assert_eq!(tools.mcp()[0]["annotations"]["readOnlyHint"], true);
/// # }
/// ```
pub trait ToolDefinitions {
    /// Every tool's definition, in declaration order.
    fn definitions() -> Definitions;
}

/// The definition of one variant, from its hidden params struct (generated code only, through `__private`).
pub(crate) fn definition<S: schemars::JsonSchema>(
    name: &'static str,
    description: &str,
    risk: Option<Risk>,
) -> ToolDefinition {
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<S>();
    // The hidden struct's name is not the tool's, and the draft is implied by where the schema goes.
    schema.remove("title");
    schema.remove("$schema");
    ToolDefinition::new(name, description, schema.to_value(), risk)
}
