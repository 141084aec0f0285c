"""Video sources: yt-dlp fetch (and local files), keyframes (one frame per page or shot), and the
video stages that turn a fetched video into a story (keyframes -> text -> align, clean, encode)."""
