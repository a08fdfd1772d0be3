import { defineCases } from './cases.ts';

defineCases('second half', 120);
