use agentguard::{Approval, Tool};

#[derive(Tool)]
enum Tools {
    DeleteFile { path: String },
}

struct Files;

impl Files {
    fn really_delete(&mut self, approval: Approval<'_, ToolsDeleteFile>) {
        let _ = approval.into_args();
    }
}

impl ToolsHandler for Files {
    type Output = ();
    fn delete_file(&mut self, approval: Approval<'_, ToolsDeleteFile>) {
        // One approval covers one call: it is moved into the first.
        self.really_delete(approval);
        self.really_delete(approval);
    }
}

fn main() {}
