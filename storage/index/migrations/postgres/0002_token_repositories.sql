-- Tokens get repository scopes; tokens from before keep every repository.
ALTER TABLE tokens ADD COLUMN repositories TEXT NOT NULL DEFAULT '["**"]';
