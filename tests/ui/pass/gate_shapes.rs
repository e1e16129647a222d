use std::sync::LazyLock;

use agentguard::{gate, ActionDenied, AgentGuard};

static GUARD: LazyLock<AgentGuard> = LazyLock::new(|| AgentGuard::callback(|_| true).no_audit().build());

/// Docs and attributes are kept.
#[gate(guard = GUARD, name = "rm", risk = "irreversible")]
#[inline]
pub fn delete_file(path: String) -> std::io::Result<()> {
    let _ = path;
    Ok(())
}

#[gate(guard = GUARD)]
fn generic<T: serde::Serialize, U>(value: T, extra: U) -> usize
where
    U: serde::Serialize + Copy,
{
    let _ = (value, extra);
    1
}

#[gate(guard = GUARD)]
fn impl_trait_arg(tag: impl serde::Serialize) {
    let _ = tag;
}

#[gate(guard = GUARD)]
fn returns_impl_trait(n: u32) -> impl Iterator<Item = u32> {
    0..n
}

#[gate(guard = GUARD, skip(writer))]
fn with_skip(writer: &mut dyn std::io::Write, mut count: u8) -> u8 {
    let _ = writer;
    count += 1;
    count
}

struct Service;

impl Service {
    #[gate(guard = GUARD)]
    fn by_ref(&self, id: u64) -> u64 {
        id
    }
    #[gate(guard = GUARD)]
    fn by_mut(&mut self, id: u64) -> u64 {
        id
    }
    #[gate(guard = GUARD)]
    fn by_value(self, id: u64) -> u64 {
        id
    }
    #[gate(guard = GUARD)]
    async fn async_method(&self, id: u64) -> u64 {
        id
    }
}

#[gate(guard = GUARD)]
async fn async_fn(id: u64) -> Result<u64, std::io::Error> {
    let value = std::future::ready(Ok::<u64, std::io::Error>(id)).await?;
    Ok(value)
}

fn main() {
    let _: Result<std::io::Result<()>, ActionDenied> = delete_file("a".into());
    let _: Result<usize, ActionDenied> = generic(1, 2);
    let _ = impl_trait_arg("x");
    let _ = returns_impl_trait(3).map(|it| it.count());
    let _ = with_skip(&mut std::io::sink(), 1);
    let _ = Service.by_ref(1);
    let _ = Service.by_mut(1);
    let _ = Service.by_value(1);
    let _ = Service.async_method(1);
    let _ = async_fn(1);
}
