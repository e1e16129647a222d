//! A Rust agent's side: rmcp's client starts `agentguard mcp` in front of the reference filesystem server and calls
//! tools through it. A read runs at once; a write waits for a person (here: nobody, so it is denied after 5 s) and
//! comes back as a tool result with `isError: true` that the model can read.
//!
//! ```text
//! cargo build -p agentguard-cli                      # the `agentguard` binary (target/debug/agentguard)
//! cargo run -p agentguard-mcp --example rust_agent -- target/debug/agentguard /tmp/notes
//! ```
//! (It starts the server with `npx -y @modelcontextprotocol/server-filesystem`, so it needs Node.js and network
//! access the first time.)

use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use rmcp::ServiceExt as _;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let agentguard = args.next().unwrap_or_else(|| "agentguard".into());
    let dir = args.next().unwrap_or_else(|| "/tmp/notes".into());
    std::fs::create_dir_all(&dir)?;
    let dir = std::fs::canonicalize(&dir)?.display().to_string();
    std::fs::write(format!("{dir}/hello.txt"), "hello\n")?;

    let mut gateway = tokio::process::Command::new(&agentguard);
    gateway.args(["mcp", "--timeout", "5s", "--name", "fs", "--"]);
    gateway.args(["npx", "-y", "@modelcontextprotocol/server-filesystem", &dir]);
    let client = ().serve(TokioChildProcess::new(gateway)?).await?;

    let tools = client.list_all_tools().await?;
    println!("{} tools, as the server lists them", tools.len());

    let read = client
        .call_tool(
            CallToolRequestParams::new("read_text_file")
                .with_arguments(json!({"path": format!("{dir}/hello.txt")}).as_object().unwrap().clone()),
        )
        .await?;
    println!("read_text_file: is_error={:?}", read.is_error);

    let write = client
        .call_tool(
            CallToolRequestParams::new("write_file").with_arguments(
                json!({"path": format!("{dir}/out.txt"), "content": "hi"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await?;
    let said: Vec<String> = write
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    println!("write_file: is_error={:?}: {}", write.is_error, said.join(""));
    client.cancel().await?;
    Ok(())
}
