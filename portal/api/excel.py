"""Excel: node templates, imports (dry run or batch) and error workbooks."""
