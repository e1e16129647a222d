use agentguard::Approval;

fn main() {
    // Only the guard makes Approvals: no public constructor, no struct literal, no Default, no Clone.
    let _forged = Approval { tool: String::from("delete_file") };
}
