"""The two doors, both made from one table of commands (``table``) and one table of options
(``ci_images.commands.options``): ``python -m ci_images COMMAND`` (``argv``) and the invoke tasks (``invoke_door``),
both running a command through the one guarded runner (``runner``)."""
