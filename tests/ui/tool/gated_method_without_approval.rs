use agentguard::{Approval, Tool};

#[derive(Tool)]
enum Tools {
    ReadFile { path: String },
    DeleteFile { path: String },
}

struct Files;

impl ToolsHandler for Files {
    type Output = ();
    fn read_file(&mut self, _path: String) {}
    fn delete_file(&mut self, _approval: Approval, _path: String) {}
}

fn main() {
    // Calling the dangerous handler directly, without the guard: there is no Approval to pass.
    Files.delete_file("notes.txt".to_string());
}
