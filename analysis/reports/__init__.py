"""Reports: the suite of fits a report or figure run performs (`suite`), the Markdown report
(`reporting`), one law per group compared (`by_group`, `report_by`) and the number formatting
the laws' text shares (`text`)."""
