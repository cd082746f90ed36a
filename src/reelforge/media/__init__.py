"""ffmpeg/ffprobe plumbing shared by every operation."""
