from reelforge.errors import MediaError
from reelforge.ops.registry import get_operation


def test_probe_reports_streams_and_duration(ctx, make_video):
    video = make_video(duration=2.0, size="320x240", fps=25)
    op = get_operation("probe")
    result = op.run(op.params_model(input=str(video)), ctx)
    assert abs(result.data["duration_s"] - 2.0) < 0.1
    kinds = [s["kind"] for s in result.data["streams"]]
    assert kinds == ["video", "audio"]
    v = result.data["streams"][0]
    assert (v["width"], v["height"], v["fps"]) == (320, 240, 25.0)
    assert result.outputs["probe"].exists()


def test_probe_rejects_non_media(ctx, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, I am not a video")
    op = get_operation("probe")
    try:
        op.run(op.params_model(input=str(bad)), ctx)
    except MediaError as exc:
        assert exc.code == "not_media"
    else:
        raise AssertionError("expected MediaError")
