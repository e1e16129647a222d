use agentguard::Tool;

#[derive(Tool)]
enum Tools {
    DeleteFile { path: String },
    #[tool(name = "delete_file")]
    RemoveFile { path: String },
}

fn main() {}
