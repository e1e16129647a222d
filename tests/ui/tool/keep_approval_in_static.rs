use std::sync::Mutex;

use agentguard::{Approval, Tool};

#[derive(Tool)]
enum Tools {
    DeleteFile { path: String },
}

/// Somewhere to keep an approval for later.
static KEPT: Mutex<Option<Approval<'static, ToolsDeleteFile>>> = Mutex::new(None);

struct Files;

impl ToolsHandler for Files {
    type Output = ();
    fn delete_file(&mut self, approval: Approval<'_, ToolsDeleteFile>) {
        // An Approval lives as long as the dispatch call it was made for: it cannot be kept in a static.
        *KEPT.lock().unwrap() = Some(approval);
    }
}

fn main() {}
