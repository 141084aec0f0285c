"""StoryGen trainer and story generation on storyloom shards (see issue: trainer)."""
