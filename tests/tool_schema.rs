//! Tool definitions from `#[derive(Tool)]` with `#[tool(schema)]` (feature `schema`): the three API shapes are pinned as expected JSON
//! files (tests/data/schema/*.json; regenerate with `AGENTGUARD_BLESS=1` and review the diff), and every generated
//! schema accepts the calls the parser accepts and refuses the ones it refuses.

use agentguard::tool::{ToolDefinition, ToolDefinitions};
use agentguard::{Risk, Tool};
use serde_json::{json, Value};

/// Where a shipment goes.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Address {
    /// Street and number.
    pub street: String,
    /// ISO 3166 country code.
    pub country: String,
}

fn default_limit() -> u32 {
    20
}

/// A support desk's tools, with the field attributes the derive honours.
#[derive(Tool, serde::Serialize, serde::Deserialize)]
#[tool(schema)]
pub enum Desk {
    /// Look a customer up by id.
    ReadCustomer {
        /// The customer's id.
        id: u64,
    },
    /// Search customers by name.
    ///
    /// Matches any part of the name.
    SearchCustomers {
        /// Text to look for.
        query: String,
        /// At most this many results.
        #[serde(default = "default_limit")]
        limit: u32,
        /// Only customers on this plan.
        plan: Option<String>,
    },
    /// Change a customer's email address.
    UpdateEmail {
        id: u64,
        /// The new address.
        #[serde(rename = "emailAddress")]
        email: String,
        /// Never sent by the model.
        #[serde(skip)]
        internal_note: String,
    },
    /// Ship a replacement.
    #[tool(name = "send_replacement")]
    Ship {
        id: u64,
        address: Address,
        items: Vec<String>,
    },
    /// Delete a customer for good.
    #[tool(risk = "irreversible")]
    DeleteCustomer { id: u64 },
    /// Credit loyalty points.
    #[tool(name = "loyalty_bonus", dangerous)]
    Bonus { id: u64, points: u32 },
    /// Reset the view (a name the classifier would flag).
    #[tool(safe)]
    ResetView,
}

fn expected(file: &str, actual: &Value) {
    let path = format!("{}/data/schema/{file}", env!("CARGO_MANIFEST_DIR"));
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("AGENTGUARD_BLESS").is_some() {
        std::fs::write(&path, &pretty).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} (AGENTGUARD_BLESS=1 writes it)"));
    assert_eq!(
        pretty, want,
        "{file} differs from the generated definitions (AGENTGUARD_BLESS=1 rewrites it)"
    );
}

#[test]
fn openai_function_tools_match_the_expected_file() {
    expected("openai.json", &Desk::definitions().openai());
}

#[test]
fn anthropic_tools_match_the_expected_file() {
    expected("anthropic.json", &Desk::definitions().anthropic());
}

#[test]
fn mcp_tools_match_the_expected_file() {
    expected("mcp.json", &Desk::definitions().mcp());
}

#[test]
fn every_tool_is_defined_once_in_declaration_order() {
    let defs = Desk::definitions();
    let names: Vec<&str> = defs.iter().map(ToolDefinition::name).collect();
    assert_eq!(names, Desk::NAMES);
    for shape in [defs.openai(), defs.anthropic(), defs.mcp()] {
        assert_eq!(shape.as_array().unwrap().len(), Desk::NAMES.len());
    }
}

#[test]
fn descriptions_come_from_the_doc_comments_of_variants_and_fields() {
    let defs = Desk::definitions();
    let search = defs.get("search_customers").unwrap();
    assert_eq!(
        search.description(),
        "Search customers by name.\n\nMatches any part of the name."
    );
    assert_eq!(
        search.parameters()["properties"]["query"]["description"],
        "Text to look for."
    );
    assert_eq!(
        defs.get("reset_view").unwrap().description(),
        "Reset the view (a name the classifier would flag)."
    );
}

#[test]
fn serde_attributes_shape_the_schema_as_they_shape_parsing() {
    let defs = Desk::definitions();
    let update = defs.get("update_email").unwrap().parameters();
    let properties = update["properties"].as_object().unwrap();
    assert!(
        properties.contains_key("emailAddress") && !properties.contains_key("email"),
        "rename: {update}"
    );
    assert!(!properties.contains_key("internal_note"), "skip: {update}");
    assert_eq!(update["required"], json!(["id", "emailAddress"]));
    assert_eq!(update["additionalProperties"], false);
    let search = defs.get("search_customers").unwrap().parameters();
    assert_eq!(
        search["required"],
        json!(["query"]),
        "a default and an Option are not required: {search}"
    );
    assert_eq!(search["properties"]["limit"]["default"], 20);
}

#[test]
fn annotations_follow_the_risk() {
    let defs = Desk::definitions();
    let hints = |name: &str| {
        let d = defs.get(name).unwrap();
        (
            d.risk(),
            d.annotations()["readOnlyHint"].clone(),
            d.annotations()["destructiveHint"].clone(),
        )
    };
    assert_eq!(hints("read_customer"), (None, json!(true), json!(false)));
    assert_eq!(hints("reset_view"), (None, json!(true), json!(false)));
    assert_eq!(
        hints("update_email"),
        (Some(Risk::DataMutation), json!(false), json!(true))
    );
    assert_eq!(
        hints("delete_customer"),
        (Some(Risk::Irreversible), json!(false), json!(true))
    );
    assert_eq!(
        hints("loyalty_bonus"),
        (Some(Risk::ManuallyFlagged), json!(false), json!(true))
    );
    assert_eq!(
        hints("send_replacement"),
        (Some(Risk::ExternalSend), json!(false), json!(true))
    );
    assert_eq!(
        defs.get("send_replacement").unwrap().annotations()["openWorldHint"],
        true
    );
}

/// Calls each tool's schema must accept (and the parser parses), and calls it must refuse (and the parser refuses).
fn calls() -> Vec<(&'static str, Vec<Value>, Vec<Value>)> {
    vec![
        (
            "read_customer",
            vec![json!({"id": 7})],
            vec![
                json!({}),
                json!({"id": "7"}),
                json!({"id": 7, "x": 1}),
                json!({"id": -1}),
                json!([7]),
            ],
        ),
        (
            "search_customers",
            vec![
                json!({"query": "jane"}),
                json!({"query": "jane", "limit": 5, "plan": "pro"}),
                json!({"query": "j", "plan": null}),
            ],
            vec![
                json!({"limit": 5}),
                json!({"query": 3}),
                json!({"query": "j", "limit": "many"}),
                json!({"query": "j", "extra": true}),
            ],
        ),
        (
            "update_email",
            vec![json!({"id": 7, "emailAddress": "a@b.com"})],
            vec![
                json!({"id": 7, "email": "a@b.com"}),
                json!({"id": 7}),
                json!({"id": 7, "emailAddress": "a@b.com", "internal_note": "x"}),
            ],
        ),
        (
            "send_replacement",
            vec![
                json!({"id": 7, "address": {"street": "Main 1", "country": "PT"}, "items": ["cable"]}),
                json!({"id": 7, "address": {"street": "s", "country": "PT"}, "items": []}),
            ],
            vec![
                json!({"id": 7, "address": {"street": "Main 1"}, "items": []}),
                json!({"id": 7, "address": "Main 1", "items": []}),
                json!({"id": 7, "address": {"street": "s", "country": "PT"}, "items": [1]}),
            ],
        ),
        (
            "delete_customer",
            vec![json!({"id": 1})],
            vec![json!({"id": 1.5}), json!(null)],
        ),
        (
            "loyalty_bonus",
            vec![json!({"id": 1, "points": 500})],
            vec![json!({"id": 1, "points": "lots"}), json!({"id": 1})],
        ),
        ("reset_view", vec![json!({})], vec![json!({"anything": 1}), json!([])]),
    ]
}

#[test]
fn every_schema_accepts_the_example_calls_and_refuses_wrong_ones_as_the_parser_does() {
    let defs = Desk::definitions();
    let mut checked = 0;
    for (name, good, bad) in calls() {
        let schema = defs.get(name).unwrap().parameters();
        let validator = jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("{name}: invalid schema: {e}"));
        for call in good {
            assert!(validator.is_valid(&call), "{name}: schema refuses {call}");
            assert!(Desk::parse(name, call.clone()).is_ok(), "{name}: parser refuses {call}");
            checked += 1;
        }
        for call in bad {
            assert!(!validator.is_valid(&call), "{name}: schema accepts {call}");
            assert!(
                Desk::parse(name, call.clone()).is_err(),
                "{name}: parser accepts {call}"
            );
            checked += 1;
        }
    }
    assert!(checked > 25, "{checked}");
    assert_eq!(calls().len(), Desk::NAMES.len(), "every tool has example calls");
}

#[test]
fn params_that_are_not_an_object_are_refused_as_the_schemas_say() {
    let err = Desk::parse("read_customer", json!([7])).err().unwrap().to_string();
    assert_eq!(
        err,
        "bad params for tool \"read_customer\" at `.`: expected a JSON object of named params, got an array"
    );
    assert!(Desk::parse("reset_view", json!("x")).is_err());
    assert!(
        Desk::parse("reset_view", Value::Null).is_ok(),
        "null is no params, as models send for such tools"
    );
}

/// agentguard reached through a re-export, as `#[tool(crate = path)]` allows.
mod deps {
    pub use agentguard as guard;
}

#[derive(Tool)]
#[tool(crate = crate::deps::guard, schema)]
pub enum ThroughReexport {
    /// Look it up.
    Lookup { key: String },
}

#[test]
fn schema_works_with_the_runtime_reached_through_another_path() {
    let defs = ThroughReexport::definitions();
    assert_eq!(defs.mcp()[0]["name"], "lookup");
    assert_eq!(defs.mcp()[0]["inputSchema"]["required"], json!(["key"]));
}
