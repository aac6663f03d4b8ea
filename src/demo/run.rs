pub async fn demo(
    _d: Option<std::time::Duration>,
    _c: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    Ok(())
}
