"""E-book sources (PDF, EPUB, HTML picture books): fetch, the format readers behind one book model,
front/back matter, picture-text pairing, and the book stages that turn a book into a story."""
