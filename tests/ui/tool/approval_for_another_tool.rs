use agentguard::{Approval, Tool};

#[derive(Tool)]
enum Tools {
    UpdateEmail { id: u64, email: String },
    DeleteCustomer { id: u64 },
}

struct Desk;

impl ToolsHandler for Desk {
    type Output = ();
    fn update_email(&mut self, approval: Approval<'_, ToolsUpdateEmail>) {
        // The approval of update_email is not the approval of delete_customer.
        self.delete_customer(approval);
    }
    fn delete_customer(&mut self, _approval: Approval<'_, ToolsDeleteCustomer>) {}
}

fn main() {}
