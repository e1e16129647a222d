use agentguard::{Approval, Tool};

#[derive(Tool)]
enum Tools {
    DeleteFile { path: String },
}

/// A handler that tries to keep the approval it is given, to run the tool again later without asking.
struct Files<'a> {
    kept: Option<Approval<'a, ToolsDeleteFile>>,
}

impl<'a> ToolsHandler for Files<'a> {
    type Output = ();
    fn delete_file(&mut self, approval: Approval<'_, ToolsDeleteFile>) {
        self.kept = Some(approval);
    }
}

fn main() {}
