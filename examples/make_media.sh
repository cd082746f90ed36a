#!/usr/bin/env bash
# Sample media for every example, made with ffmpeg into examples/media/ (not committed).
#   examples/make_media.sh && reelforge submit examples/build.json --wait
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p media
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }
# an 8 s moving background, 1280x720
ff -f lavfi -i "testsrc2=s=1280x720:r=30:d=8" -vf "hue=s=0.4,noise=alls=8:allf=t" \
   -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p media/background.mp4
# a second, calmer background clip
ff -f lavfi -i "gradients=s=1280x720:r=30:d=6:speed=0.02" -c:v libx264 -preset veryfast -crf 23 \
   -pix_fmt yuv420p media/background2.mp4
# a "talking head": a face-sized test pattern with a tone (any video of a person works better)
ff -f lavfi -i "mandelbrot=s=480x480:r=25" -f lavfi -i "sine=f=220:d=4" -t 4 -c:v libx264 -preset veryfast \
   -pix_fmt yuv420p -c:a aac -shortest media/head.mp4
# 20 s of quiet "music": two soft tones
ff -f lavfi -i "sine=f=220:d=20" -f lavfi -i "sine=f=330:d=20" -filter_complex "amix=inputs=2,volume=0.5" \
   media/music.wav
# two photos for Ken Burns and the timeline
ff -f lavfi -i "testsrc2=s=1600x1000" -frames:v 1 media/photo1.jpg
ff -f lavfi -i "smptehdbars=s=1600x1000" -frames:v 1 media/photo2.jpg
# a short spoken narration (espeak-ng is installed by `make run`), for align / transcribe / loop
espeak-ng -v en-us -s 150 -w media/narration.wav \
  "Welcome to ReelForge. Captions show this script verbatim, with the times it was really spoken."
# subtitles for a caption clip
cat > media/captions.srt <<'SRT'
1
00:00:00,500 --> 00:00:02,500
Made with ReelForge

2
00:00:02,800 --> 00:00:04,800
One JSON timeline, one render
SRT
echo "sample media written to $(pwd)/media"
