use agentguard::Approval;

struct Args;

fn main() {
    // Only the guard makes Approvals: no public constructor, no struct literal, no Default, no Clone.
    let _forged: Approval<'static, Args> = Approval { args: Args };
}
