use agentguard::Tool;

#[derive(Tool)]
union Either {
    a: u32,
    b: f32,
}

fn main() {}
