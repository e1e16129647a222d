use agentguard::Tool;

#[derive(Tool)]
enum Tools {
    ReadFile { path: String },
    DeleteFile { path: String },
}

struct Files;

impl ToolsHandler for Files {
    type Output = ();
    fn read_file(&mut self, _path: String) {}
    fn delete_file(&mut self, _approval: agentguard::Approval<'_, ToolsDeleteFile>) {}
}

fn main() {
    // Calling the dangerous handler directly, without the guard: its arguments alone are not an Approval.
    Files.delete_file(ToolsDeleteFile { path: "notes.txt".to_string() });
}
