#include <cblas.h>
#include <stddef.h>

/* LAPACK routines that Debian's OpenBLAS exports (Fortran calling convention: every argument by
   pointer, hidden string lengths at the end). Declarations only; the code is OpenBLAS's. */
void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
            const int *lwork, int *info, size_t jobz_length, size_t uplo_length);
void dgeev_(const char *jobvl, const char *jobvr, const int *n, double *a, const int *lda, double *wr, double *wi,
            double *vl, const int *ldvl, double *vr, const int *ldvr, double *work, const int *lwork, int *info,
            size_t jobvl_length, size_t jobvr_length);
